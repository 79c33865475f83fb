"""The random least-squares family of Andrychowicz et al. 2016 (seed 001): f(θ) = ‖Wθ − y‖²."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lopt.tasks.base import Task, TaskFamily


def quadratic_family(dim: int = 10, init_scale: float = 0.01) -> TaskFamily:
    """f(θ) = ‖Wθ − y‖² with a fresh W ∈ R^{dim×dim} and y ∈ R^dim, entries N(0, 1), per instance.

    Seed 001's quadratic experiment (10×10 W). θ starts at N(0, init_scale²) as in the L2L code.
    The loss is deterministic: the key is accepted and ignored.
    """
    if dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim}")

    def sample(key):
        kw, ky = jax.random.split(key)
        return {
            "W": jax.random.normal(kw, (dim, dim)),
            "y": jax.random.normal(ky, (dim,)),
        }

    def build(cfg):
        def init(key):
            return {"theta": init_scale * jax.random.normal(key, (dim,))}

        def loss(params, key):
            del key
            residual = cfg["W"] @ params["theta"] - cfg["y"]
            return jnp.sum(residual**2)

        return Task(init=init, loss=loss)

    return TaskFamily(sample=sample, build=build, name=f"quadratic{dim}")
