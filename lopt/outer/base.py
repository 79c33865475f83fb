"""The Estimator noun of DESIGN.md: an outer-gradient estimator over a batch of inner runs."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable


@dataclasses.dataclass(frozen=True)
class Estimator:
    """``init(key, theta) -> est_state`` (a batch of truncated inner runs) and
    ``grad(theta, est_state, key) -> (meta_grad, est_state, metrics)``."""

    init: Callable[[Any, Any], Any]
    grad: Callable[[Any, Any, Any], tuple]
    name: str = "estimator"


def option(default, *, flag: str, run: bool = True, type=None):
    """A field of an estimator config that ``lopt train`` offers as ``--NAME``, declared where
    the estimator is: ``flag`` its help line, ``run`` whether it shapes the meta-training
    trajectory (a resume must match it), ``type`` its value's type when the default (None) does
    not tell. The estimator's ``__post_init__`` checks its range; the CLI checks nothing again."""
    metadata = {"flag": flag, "shapes_run": run}
    if type is not None:
        metadata["type"] = type
    return dataclasses.field(default=default, metadata=metadata)


def options_of(cls) -> dict:
    """The fields of estimator config class ``cls`` that it offers as flags, by name: its own,
    and those of the options it holds (a field declared with ``held``)."""
    out = {}
    for f in dataclasses.fields(cls):
        if "holds" in f.metadata:
            out.update(options_of(f.metadata["holds"]))
        elif "flag" in f.metadata:
            out[f.name] = f
    return out


def held(options_cls):
    """A field holding an ``options_cls`` (default: its defaults) whose own options an
    estimator offers as flags too (``options_of``)."""
    return dataclasses.field(default_factory=options_cls, metadata={"holds": options_cls})


class FlatHeldOptions(type):
    """Metaclass of estimator configs that hold options (``held``): the held options' fields
    may also be given flat, ``TBPTT(num_runs=8)`` for ``TBPTT(unroll=UnrollOptions(
    num_runs=8))`` — as lopt's estimators took them when they inherited those options — and
    given together with the holder (``dataclasses.replace(est, num_runs=4)``) they replace
    its fields. A held class's ``RENAMED`` old names are taken too. Works for every
    subclass, however it is decorated."""

    def __call__(cls, *args, **kwargs):
        for f in dataclasses.fields(cls):
            if "holds" not in f.metadata:
                continue
            held = f.metadata["holds"]
            names = {g.name for g in dataclasses.fields(held)} | set(getattr(held, "RENAMED",
                                                                           {}))
            flat = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
            if flat:
                base = kwargs.get(f.name)
                kwargs[f.name] = (f.metadata["holds"](**flat) if base is None
                                  else dataclasses.replace(base, **flat))
        return super().__call__(*args, **kwargs)
