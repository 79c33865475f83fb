"""UpdateRule (DESIGN.md) and the lifting of a per-coordinate rule over every coordinate of a pytree."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

Theta = Any
State = Any
Params = Any


@dataclasses.dataclass(frozen=True)
class UpdateRule:
    """An update rule: ``init_meta(key) -> theta``, ``init(theta, params) -> state`` and
    ``update(theta, state, grads, params, loss) -> (updates, state)``.

    ``updates`` are added to the parameters (``optax.apply_updates``). ``name`` and ``config``
    name the constructor and its keyword arguments, so ``lopt.save`` can rebuild the rule.
    A rule with ``wants_eval_loss`` receives ``loss`` as ``{"train": ..., "eval": ...}`` in
    inner runs of tasks that have held-out data (the scalar training loss otherwise).
    A rule with ``eval_params(state, params)`` is measured at those parameters rather than at
    the ones it takes gradients at (schedule-free methods: the averaged iterate x, not y).
    """

    init_meta: Callable[[jax.Array], Theta]
    init: Callable[[Theta, Params], State]
    update: Callable[..., tuple]
    name: str = "rule"
    config: dict = dataclasses.field(default_factory=dict)
    wants_eval_loss: bool = False
    eval_params: Optional[Callable[[State, Params], Params]] = None


def per_coordinate(apply: Callable) -> Callable:
    """Lift ``apply(theta, *per_coordinate_inputs) -> outputs`` over every coordinate of every leaf.

    Each tree argument has the parameters' structure as a prefix: at every parameter leaf of
    shape ``s`` it holds arrays of shape ``s + extra`` (``extra`` may be empty: a gradient,
    or ``(layers, units)``: a per-coordinate hidden state). ``apply`` sees one coordinate:
    scalars and arrays of shape ``extra``. The lifted function returns, at every parameter
    leaf, ``apply``'s output with the leaf's shape prepended. It is one ``jax.vmap`` per leaf,
    so the network's weights in ``theta`` are shared and its state is separate per coordinate.
    """

    def lifted(theta, params, *trees):
        def leaf(p, *subtrees):
            lead = p.shape
            n = p.size

            def flat(x):
                return x.reshape((n,) + x.shape[len(lead):])

            flat_inputs = [jax.tree.map(flat, t) for t in (p,) + subtrees]
            out = jax.vmap(apply, in_axes=(None,) + (0,) * len(flat_inputs))(theta, *flat_inputs)
            return jax.tree.map(lambda o: o.reshape(lead + o.shape[1:]), out)

        return jax.tree.map(leaf, params, *trees)

    return lifted


def unzip(params: Params, tree: Any, count: int) -> tuple:
    """Split a tree holding a ``count``-tuple at every parameter leaf into ``count`` trees."""
    return tuple(jax.tree.map(lambda _, t, i=i: t[i], params, tree) for i in range(count))


def zeros_per_coordinate(params: Params, extra: tuple, dtype=None) -> Params:
    """A per-coordinate state of shape ``leaf.shape + extra`` (dtype of the leaf by default)."""
    return jax.tree.map(lambda p: jnp.zeros(p.shape + tuple(extra), dtype or p.dtype), params)


def no_theta(key: Optional[jax.Array] = None) -> dict:
    """The empty meta-parameters of a hand-designed rule."""
    del key
    return {}
