"""The random least-squares family of Andrychowicz et al. 2016: f(θ) = ‖Wθ − y‖²,
optionally through a nonlinearity and with controlled conditioning."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lopt.tasks.base import Task, TaskFamily

NONLINEARITIES = {"none": lambda z: z, "tanh": jnp.tanh, "softplus": jax.nn.softplus}


def quadratic_family(dim: int = 10, init_scale: float = 0.01, nonlinearity: str = "none",
                     condition: float = 0.0) -> TaskFamily:
    """f(θ) = ‖h(Wθ) − y‖² with a fresh W ∈ R^{dim×dim} and y ∈ R^dim, entries N(0, 1), per
    instance; h is ``nonlinearity`` (identity by default: Andrychowicz et al. 2016's 10×10
    experiment).

    With ``condition`` c > 0, W's columns are scaled by 10^(c·(j/(dim−1) − 1/2)), spreading the
    curvature over c decades. θ starts at N(0, init_scale²) as in the L2L code. The loss is
    deterministic: the key is accepted and ignored.
    """
    if not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be a positive integer, got {dim}")
    if nonlinearity not in NONLINEARITIES:
        raise ValueError(f"nonlinearity must be one of {', '.join(NONLINEARITIES)}; "
                         f"got {nonlinearity!r}")
    if not 0.0 <= condition <= 6.0:
        raise ValueError(f"condition must be between 0 and 6 decades; got {condition!r}")
    h = NONLINEARITIES[nonlinearity]
    ramp = jnp.linspace(-0.5, 0.5, dim) if dim > 1 else jnp.zeros((1,))
    column_scale = 10.0 ** (condition * ramp)

    def sample(key):
        kw, ky = jax.random.split(key)
        return {
            "W": jax.random.normal(kw, (dim, dim)) * column_scale,
            "y": jax.random.normal(ky, (dim,)),
        }

    def build(cfg):
        def init(key):
            return {"theta": init_scale * jax.random.normal(key, (dim,))}

        def loss(params, key):
            del key
            residual = h(cfg["W"] @ params["theta"]) - cfg["y"]
            return jnp.sum(residual**2)

        return Task(init=init, loss=loss)

    suffix = ("" if nonlinearity == "none" else f"_{nonlinearity}") + \
        ("" if condition == 0 else f"_cond{condition:g}")
    return TaskFamily(sample=sample, build=build, name=f"quadratic{dim}{suffix}")
