"""Task-family wrappers: RNNprop's two training tricks (Lv, Chen & Zhang 2017, seed 004)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lopt.tasks.base import Task, TaskFamily


def random_scaling(family: TaskFamily, low: float = -3.0, high: float = 3.0) -> TaskFamily:
    """f_c(w) = f(c ⊙ w), with every parameter coordinate's c = exp(U(low, high)) drawn per
    instance; the instance starts at w₀ / c, so c ⊙ w starts where the unscaled task does.

    Seed 004's "random scaling": the optimizer never sees the same curvature scale twice, which
    pushes it towards scale-invariant behaviour.
    """
    if not high > low:
        raise ValueError(f"high must be greater than low, got low={low}, high={high}")

    def sample(key):
        k_inner, k_scale = jax.random.split(key)
        inner_cfg = family.sample(k_inner)
        shapes = jax.eval_shape(family.build(inner_cfg).init, jax.random.PRNGKey(0))
        leaves, treedef = jax.tree.flatten(shapes)
        keys = jax.random.split(k_scale, len(leaves))
        scales = [jnp.exp(jax.random.uniform(k, s.shape, s.dtype, low, high))
                  for k, s in zip(keys, leaves)]
        return {"inner": inner_cfg, "scale": jax.tree.unflatten(treedef, scales)}

    def build(cfg):
        inner = family.build(cfg["inner"])
        scale = cfg["scale"]

        def rescaled(fn):
            return lambda params, key: fn(jax.tree.map(jnp.multiply, scale, params), key)

        return Task(init=lambda key: jax.tree.map(jnp.divide, inner.init(key), scale),
                    loss=rescaled(inner.loss),
                    eval_loss=None if inner.eval_loss is None else rescaled(inner.eval_loss))

    return TaskFamily(sample=sample, build=build, name=f"{family.name}_rescaled")


def with_convex(family: TaskFamily, dim: int = 10) -> TaskFamily:
    """F(w, θ) = f(w) + g(θ), g(θ) = ‖Aθ − b‖² / dim a random convex quadratic on ``dim`` extra
    parameters (A, b ~ N(0, 1) per instance): seed 004's "combination with a convex function",
    which adds well-conditioned coordinates to every training problem."""
    if int(dim) < 1:
        raise ValueError(f"dim must be a positive integer, got {dim}")

    def sample(key):
        k_inner, k_a, k_b = jax.random.split(key, 3)
        return {"inner": family.sample(k_inner), "A": jax.random.normal(k_a, (dim, dim)),
                "b": jax.random.normal(k_b, (dim,))}

    def build(cfg):
        inner = family.build(cfg["inner"])

        def convex(theta):
            r = cfg["A"] @ theta - cfg["b"]
            return jnp.sum(r**2) / dim

        def init(key):
            k_task, k_theta = jax.random.split(key)
            return {"task": inner.init(k_task), "convex": 0.1 * jax.random.normal(k_theta, (dim,))}

        def combined(fn):
            return lambda params, key: fn(params["task"], key) + convex(params["convex"])

        return Task(init=init, loss=combined(inner.loss),
                    eval_loss=None if inner.eval_loss is None else combined(inner.eval_loss))

    return TaskFamily(sample=sample, build=build, name=f"{family.name}_plus_convex")
