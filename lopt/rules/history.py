"""Learned optimizers on normalized inputs (Shahid 2017): k-timestep gradient history
and k-momentum variants, with the x_ref / x_diff / η_min update."""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from lopt.rules.base import UpdateRule, per_coordinate, state_dtype, unzip, zeros_per_coordinate
from lopt.rules.nets import dense, init_dense

VARIANTS = ("timesteps", "momentums")
DEFAULT_MOMENTUM_BETAS = (0.0, 0.5, 0.9, 0.99, 0.999)


def history_step(x_hist: jax.Array, x: jax.Array, delta: jax.Array, eta_min: float,
                 variant: str) -> jax.Array:
    """Shahid 2017's update: x_ref = (x_max + x_min)/2 (x_t for the momentum variant),
    x_diff = x_max − x_min over the last k iterates, x_{t+1} = x_ref + Δx · (x_diff + η_min)."""
    x_max, x_min = jnp.max(x_hist), jnp.min(x_hist)
    x_ref = (x_max + x_min) / 2 if variant == "timesteps" else x
    return x_ref + delta * ((x_max - x_min) + eta_min)


def learned_delta(theta, g_hist: jax.Array) -> jax.Array:
    """The network's Δx ∈ [−1, 1] for one coordinate's history: the k values divided by their
    largest magnitude, one tanh hidden layer, tanh output (Shahid 2017's learned Δx table)."""
    inputs = g_hist / (jnp.max(jnp.abs(g_hist)) + 1e-30)
    return jnp.tanh(dense(theta["out"], jnp.tanh(dense(theta["hidden"], inputs)))[0])


def normalized_history(k: int = 5, variant: str = "timesteps", hidden: int = 32,
                       eta_min: float = 1e-3,
                       betas: Sequence[float] = DEFAULT_MOMENTUM_BETAS) -> UpdateRule:
    """Shahid 2017: per coordinate, the last k gradients (``timesteps``) or momentums at k
    timescales (``momentums``, β from ``betas``), each divided by their largest magnitude so
    they lie in [−1, 1], go through an MLP (one hidden layer) whose tanh output is Δx ∈ [−1, 1];
    the new iterate is x_ref + Δx · (x_diff + η_min) with x_diff the range of the last k
    iterates and x_ref its midpoint (``timesteps``) or the current iterate (``momentums``).
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {list(VARIANTS)}, got {variant!r}")
    if int(k) < 1:
        raise ValueError(f"k must be a positive integer, got {k}")
    betas = tuple(float(b) for b in betas)[:k] if variant == "momentums" else ()
    if variant == "momentums" and len(betas) != k:
        raise ValueError(f"betas must hold k={k} timescales for the momentums variant, got {betas}")

    def init_meta(key):
        k1, k2 = jax.random.split(key)
        return {"hidden": init_dense(k1, k, hidden), "out": init_dense(k2, hidden, 1, scale=0.1)}

    def init(theta, params):
        history = lambda p: jnp.broadcast_to(p.astype(state_dtype(p.dtype))[..., None],
                                             p.shape + (k,))
        return {"x": jax.tree.map(history, params),
                "g": zeros_per_coordinate(params, (k,))}

    def one_coordinate(theta, x, grad, x_hist, g_hist):
        if variant == "timesteps":
            g_hist = jnp.concatenate([g_hist[1:], grad[None]])
        else:
            b = jnp.asarray(betas, grad.dtype)
            g_hist = b * g_hist + (1 - b) * grad
        delta = learned_delta(theta, g_hist)
        x_hist = jnp.concatenate([x_hist[1:], x[None]])
        new_x = history_step(x_hist, x, delta, eta_min, variant)
        return new_x - x, x_hist, g_hist

    lifted = per_coordinate(one_coordinate)

    def update(theta, state, grads, params, loss=None):
        del loss
        if params is None:
            raise ValueError("normalized_history needs params (it steps relative to past iterates)")
        out = lifted(theta, params, grads, state["x"], state["g"])
        updates, x_hist, g_hist = unzip(params, out, 3)
        return updates, {"x": x_hist, "g": g_hist}

    return UpdateRule(init_meta=init_meta, init=init, update=update, name="normalized_history",
                      config={"k": k, "variant": variant, "hidden": hidden, "eta_min": eta_min,
                              "betas": list(betas) or list(DEFAULT_MOMENTUM_BETAS)})
