"""Truncated backpropagation through time over a batch of staggered inner runs."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from lopt.outer.base import Estimator, option
from lopt.outer.common import UnrollOptions, WithUnroll, masked_mean, run_metrics
from lopt.outer.unroll import broadcast_runs, truncated_unroll
from lopt.rules.base import UpdateRule
from lopt.tasks.base import TaskFamily


def per_run_gradients(opts: UnrollOptions, rule, family, thetas, batch, *, second_derivatives,
                      paired=False):
    """∂(Σ_t w_t ℓ_t)/∂θ_i for every run i (thetas has a leading run axis), by backprop through
    one truncated unroll. Runs with a non-finite step are flagged not ok; their gradients may be
    NaN and must be masked by the caller."""

    def total(thetas):
        new, out = truncated_unroll(rule, family, thetas, batch, opts,
                                    second_derivatives=second_derivatives, paired=paired)
        values = opts.step_terms(out).sum(axis=0)
        ok = out.finite.all(axis=0)
        return jnp.sum(jnp.where(ok, values, 0.0)), (new, out, values, ok)

    grads, aux = jax.grad(total, has_aux=True)(thetas)
    return grads, aux


@dataclasses.dataclass(frozen=True)
class TBPTT(WithUnroll):
    """Truncated BPTT: the gradient of L(φ) = Σ_t w_t ℓ_t(φ) over one truncation of K steps.

    Andrychowicz et al. 2016's meta-loss over the trajectory, cut into truncations as Metz et al.
    2019 describes (and biased by the cut, as Metz et al. 2019 shows). ``second_derivatives=False``
    drops ∂∇_t/∂φ, as L2L does. The gradient is the mean over the ``num_runs`` runs; a run with a
    non-finite loss is reset and left out of the mean.
    """

    second_derivatives: bool = option(False, flag="keep ∂∇/∂θ in the meta-gradient (L2L "
                                                  "drops it)")

    def build(self, rule: UpdateRule, family: TaskFamily, axis_name=None) -> Estimator:
        def init(key, theta):
            return self.init_runs(rule, family, theta, key)

        def grad(theta, batch, key):
            del key  # every run carries its own key
            num_runs = batch.step.shape[0]
            grads, (new, out, values, ok) = per_run_gradients(
                self, rule, family, broadcast_runs(theta, num_runs), batch,
                second_derivatives=self.second_derivatives)
            meta_grad, _ = masked_mean(grads, ok, axis_name)
            return meta_grad, new, run_metrics(values, out, ok, axis_name)

        return Estimator(init=init, grad=grad, name="tbptt")
