"""UpdateRule (DESIGN.md) and the lifting of a per-coordinate rule over every coordinate of a
pytree."""
from __future__ import annotations

import dataclasses
import inspect
import numbers
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from lopt.rules.lifting import per_coordinate  # noqa: F401  (re-exported)

Theta = Any
State = Any
Params = Any


@dataclasses.dataclass(frozen=True)
class UpdateRule:
    """An update rule: ``init_meta(key) -> theta``, ``init(theta, params) -> state`` and
    ``update(theta, state, grads, params, loss) -> (updates, state)``.

    ``updates`` are added to the parameters (``optax.apply_updates``). ``name`` and ``config``
    name the constructor and its keyword arguments, so ``lopt.save`` can rebuild the rule.
    A rule with ``wants_valid_loss`` receives ``loss`` as ``{"train": ..., "valid": ...}`` in
    inner runs of tasks that have a validation split (the scalar training loss otherwise).
    A rule with ``eval_params(state, params)`` is measured at those parameters rather than at
    the ones it takes gradients at (schedule-free methods: the averaged iterate x, not y).
    A rule with ``wants_num_steps`` is told the length of the run it optimizes:
    ``init(theta, params, num_steps)`` (its learned schedule reads the fraction trained).
    """

    init_meta: Callable[[jax.Array], Theta]
    init: Callable[[Theta, Params], State]
    update: Callable[..., tuple]
    name: str = "rule"
    config: dict = dataclasses.field(default_factory=dict)
    wants_valid_loss: bool = False
    eval_params: Optional[Callable[[State, Params], Params]] = None
    wants_num_steps: bool = False

    def start(self, theta: Theta, params: Params, num_steps=None) -> State:
        """``init``, passing ``num_steps`` to a rule that wants it (one line when missing)."""
        if not self.wants_num_steps:
            return self.init(theta, params)
        if num_steps is None:
            raise ValueError(f"rule {self.name!r} schedules its steps over the run: pass "
                             f"num_steps, the number of training steps")
        return self.init(theta, params, num_steps)


def scaled_by_schedule(rule: UpdateRule, schedule: Callable) -> UpdateRule:
    """``rule`` with its update at step t (from 0) multiplied by ``schedule(t)``: a learning-rate
    schedule for any rule whose step is proportional to its learning rate or step scale (Adam,
    the celo2 family), as ``optax.scale_by_schedule`` does for an optax chain. Theta, name and
    config are the rule's own; the state adds a step count."""
    def init(theta, params, *num_steps):
        return {"inner": rule.init(theta, params, *num_steps),
                "count": jnp.zeros((), jnp.int32)}

    def update(theta, state, grads, params, loss=None):
        updates, inner = rule.update(theta, state["inner"], grads, params, loss)
        factor = schedule(state["count"])
        updates = jax.tree.map(lambda u: (u * factor).astype(u.dtype), updates)
        return updates, {"inner": inner, "count": state["count"] + 1}

    eval_params = None if rule.eval_params is None else (
        lambda state, params: rule.eval_params(state["inner"], params))
    return dataclasses.replace(rule, init=init, update=update, eval_params=eval_params)


def check_rule(rule, argument: str = "rule") -> None:
    """A TypeError naming ``argument`` when ``rule`` is not an UpdateRule."""
    if not isinstance(rule, UpdateRule):
        raise TypeError(f"{argument} must be an UpdateRule (lopt.rules.make_rule(NAME), or the "
                        f"rule of lopt.load(PATH)); got {type(rule).__name__}")


def _kind_error(default, value) -> Optional[str]:
    """What a setting whose default is ``default`` must be, when ``value`` is not that."""
    number = (isinstance(value, numbers.Real) and not isinstance(value, bool)) or (
        # a traced scalar (a step scale swept under jit) has a dtype but no value to convert
        getattr(value, "shape", None) == () and np.issubdtype(getattr(value, "dtype", None)
                                                              or np.asarray(value).dtype,
                                                              np.number))
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "true or false"
    if isinstance(default, int):
        return None if number and float(value).is_integer() else "an integer"
    if isinstance(default, float):
        # optax takes a schedule wherever it takes a number
        return None if number or callable(value) else "a number"
    if isinstance(default, str):
        return None if isinstance(value, str) else "a string"
    if isinstance(default, tuple):
        return None if isinstance(value, (tuple, list)) else "a list"
    return None


def check_settings(name: str, factory: Callable, config: dict) -> None:
    """One error naming the setting when ``config`` holds a keyword ``factory`` does not take
    or a value of another kind than its default's."""
    params = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    for key, value in config.items():
        if key not in params:
            raise TypeError(f"rule {name!r} has no setting {key!r}; its settings: "
                            f"{', '.join(params) or 'none'}")
        default = params[key].default
        want = None if default is inspect.Parameter.empty else _kind_error(default, value)
        if want:
            raise TypeError(f"rule {name!r}: {key} must be {want} (default {default!r}); got "
                            f"{value!r}")


def theta_mismatch(rule: UpdateRule, theta) -> Optional[str]:
    """The first way ``theta`` differs from ``rule.init_meta``'s output (tree structure, then a
    leaf's shape or dtype, named by its tree path), or None when it matches."""

    template = jax.eval_shape(rule.init_meta, jax.random.PRNGKey(0))
    try:
        want = jax.tree_util.tree_flatten_with_path(template)[0]
        got = jax.tree_util.tree_flatten_with_path(theta)[0]
    except Exception as err:  # a theta that is not a pytree of arrays
        return f"not a pytree of arrays ({err})"
    want_paths = [jax.tree_util.keystr(p) for p, _ in want]
    got_paths = [jax.tree_util.keystr(p) for p, _ in got]
    if want_paths != got_paths:
        missing = [p for p in want_paths if p not in set(got_paths)]
        extra = [p for p in got_paths if p not in set(want_paths)]
        return (f"structure differs: missing {missing[:3]}, unexpected {extra[:3]}"
                if missing or extra else "structure differs (same leaves, other nesting)")
    for (path, w), (_, g) in zip(want, got):
        shape = tuple(np.shape(g))
        dtype = getattr(g, "dtype", None) or np.asarray(g).dtype
        if shape != tuple(w.shape) or np.dtype(dtype) != np.dtype(w.dtype):
            return (f"{jax.tree_util.keystr(path)} has shape {shape} {np.dtype(dtype)}, "
                    f"expected {tuple(w.shape)} {np.dtype(w.dtype)}")
    return None


def unzip(params: Params, tree: Any, count: int) -> tuple:
    """Split a tree holding a ``count``-tuple at every parameter leaf into ``count`` trees."""
    return tuple(jax.tree.map(lambda _, t, i=i: t[i], params, tree) for i in range(count))


def constant_dtype():
    """float32, or float64 when jax's x64 mode is on: the dtype of a rule's own constants (its
    decays, time and loss features), so that a run in float64 is float64 throughout — how the
    conformance tests check a rule against its reference beyond float32's rounding."""
    return jax.dtypes.canonicalize_dtype(jnp.float64)


def state_dtype(param_dtype):
    """The dtype a rule keeps its state in for parameters of ``param_dtype``: float32 at least
    (bfloat16 and float16 parameters get float32 accumulators, as optax's and the reference
    learned optimizers'), so a step returns the state in the dtype it received."""
    return jnp.promote_types(param_dtype, jnp.float32)


def zeros_per_coordinate(params: Params, extra: tuple, dtype=None) -> Params:
    """A per-coordinate state of shape ``leaf.shape + extra`` (``state_dtype`` of the leaf by
    default)."""
    return jax.tree.map(lambda p: jnp.zeros(p.shape + tuple(extra),
                                            dtype or state_dtype(p.dtype)), params)


def no_theta(key: Optional[jax.Array] = None) -> dict:
    """The empty meta-parameters of a hand-designed rule."""
    del key
    return {}
