"""Truncated backpropagation through time over a batch of staggered inner runs."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from lopt.outer.base import Estimator
from lopt.outer.unroll import init_inner_batch, truncated_unroll
from lopt.rules.base import UpdateRule
from lopt.tasks.base import TaskFamily

WEIGHTINGS = ("mean", "last")


@dataclasses.dataclass(frozen=True)
class TBPTT:
    """Truncated BPTT: the gradient of L(φ) = Σ_t w_t f(θ_t) over one truncation of K steps.

    Seed 001's meta-loss over the trajectory, cut into truncations as seed 003 describes (and
    biased by the cut, as seed 003 shows). ``weighting="mean"`` sets w_t = 1/K; ``"last"`` puts
    all weight on the truncation's last step. ``second_derivatives=False`` drops ∂∇_t/∂φ, as
    L2L does. The meta-loss is averaged over ``num_tasks`` inner runs.
    """

    num_tasks: int = 32
    truncation: int = 20
    horizon: int = 100
    second_derivatives: bool = False
    weighting: str = "mean"
    stagger: bool = True

    def __post_init__(self):
        for field in ("num_tasks", "truncation", "horizon"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{field} must be a positive integer, got {value!r}")
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {list(WEIGHTINGS)}, got {self.weighting!r}")

    def build(self, rule: UpdateRule, family: TaskFamily) -> Estimator:
        def init(key, theta):
            return init_inner_batch(rule, family, theta, key, self.num_tasks, self.horizon,
                                    self.stagger)

        def meta_loss(theta, batch, key):
            batch, out = truncated_unroll(rule, family, theta, batch, key,
                                          num_steps=self.truncation, horizon=self.horizon,
                                          second_derivatives=self.second_derivatives)
            per_step = out.meta_loss.mean(axis=1)
            value = per_step.mean() if self.weighting == "mean" else per_step[-1]
            return value, (batch, out)

        def grad(theta, batch, key):
            (value, (batch, out)), g = jax.value_and_grad(meta_loss, has_aux=True)(
                theta, batch, key)
            metrics = {"meta_loss": value, "inner_loss": out.loss.mean(),
                       "resets": out.reset.sum().astype(jnp.int32)}
            return g, batch, metrics

        return Estimator(init=init, grad=grad, name="tbptt")
