"""One-line checks of config values: each error names the field and what it allows."""
from __future__ import annotations

import math
import typing
from typing import Sequence

import jax

from lopt.files.errors import UsageError
from lopt.outer.mup_rule import task_multipliers
from lopt.tasks import Mixture, make_family, resolve


class ConfigError(UsageError):
    """A config value outside its allowed range; the message names the field."""


def check_task(name) -> None:
    """One line naming the field when ``name`` is not a task, sampled spec or mixture."""

    try:
        resolve(name)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def check_mup_task(name):
    """The μP multipliers every family of task ``name`` carries; one line naming the task when
    one has none."""
    try:
        return task_multipliers(make_family(name))
    except ValueError as err:
        raise ConfigError(f"task {name!r}: {err}") from None


def tasks_without_validation(name) -> list:
    """The families of task ``name`` whose tasks have no validation split."""

    family = make_family(name)
    families = family.families if isinstance(family, Mixture) else (family,)
    return [f.name for f in families if not f.build(f.sample(jax.random.PRNGKey(0))).has_validation]


def one_of(field, value, allowed):
    if value not in allowed:
        raise ConfigError(f"{field} must be one of {', '.join(sorted(allowed))}; got {value!r}")


# Counts and seeds beyond this are typos: no run here takes 2**31 steps, tasks or a seed
# that PRNGKey cannot hold.
MAX_COUNT = 2**31 - 1


def integer(field, value):
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{field} must be an integer; got {value!r}")
    if not -MAX_COUNT <= value <= MAX_COUNT:
        raise ConfigError(f"{field} must be an integer in [{-MAX_COUNT}, {MAX_COUNT}]; "
                          f"got {value!r}")


def at_least(field, value, low):
    integer(field, value)
    if value < low:
        raise ConfigError(f"{field} must be an integer >= {low}; got {value!r}")


def positive(field, value, low=1e-30, high=1e30):
    """A number in [low, high]: both well inside float32's normal range, so the value neither
    overflows nor flushes to zero once it meets float32 arithmetic."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        raise ConfigError(f"{field} must be a number in [{low:g}, {high:g}]; got {value!r}")


# Largest sizes a rule config may ask for: beyond them theta alone outgrows any one machine.
MAX_SIZE = 1 << 16


def check_value(field, value, kind) -> None:
    """One line naming ``field`` unless ``value`` (parsed JSON) fits annotation ``kind``: int
    (not bool, 0..MAX_SIZE for sizes), float (finite, float32 range), str, bool or a sequence
    of floats."""
    origin = typing.get_origin(kind)
    if kind is bool:
        ok = isinstance(value, bool)
        need = "true or false"
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        need = "an integer"
        if ok and not 0 <= value <= MAX_SIZE:
            raise ConfigError(f"{field} must be an integer in [0, {MAX_SIZE}]; got {value!r}")
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) \
            and math.isfinite(value) and abs(value) <= 3e38
        need = "a finite number"
    elif kind is str:
        ok = isinstance(value, str)
        need = "a string"
    elif origin is not None and origin in (Sequence, list, tuple, typing.Sequence) or \
            str(kind).startswith(("typing.Sequence", "collections.abc.Sequence")):
        ok = isinstance(value, list) and bool(value) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            for v in value)
        need = "a non-empty list of finite numbers"
    else:
        return
    if not ok:
        raise ConfigError(f"{field} must be {need}; got {value!r}")
