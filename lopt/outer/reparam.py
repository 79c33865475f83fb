"""The reparameterization gradient of the smoothed meta-loss, and its inverse-variance mix with
ES."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from lopt.outer.base import Estimator
from lopt.outer.common import (
    PerturbedOptions,
    antithetic_thetas,
    masked_mean,
    masked_mean_and_total_variance,
    pair_halves,
    perturbations,
    run_metrics,
    scale_per_run,
)
from lopt.outer.tbptt import per_run_gradients
from lopt.rules.base import UpdateRule
from lopt.tasks.base import TaskFamily


def _perturbed_gradients(opts, rule, family, theta, runs, sigma, second_derivatives):
    """Backprop through antithetic perturbed unrolls: per-pair reparameterization gradients
    (∇L(θ+σε) + ∇L(θ−σε))/2, per-pair ES estimates ε(L⁺ − L⁻)/(2σ), and what they came from."""
    n = runs.step.shape[0]
    eps = perturbations(theta, runs.key)
    batch = jax.tree.map(pair_halves, runs)
    grads, (new, out, values, ok2) = per_run_gradients(
        opts, rule, family, antithetic_thetas(theta, eps, sigma), batch,
        second_derivatives=second_derivatives, paired=True)
    ok = ok2[:n] & ok2[n:]
    reparam = jax.tree.map(lambda g: (g[:n] + g[n:]) / 2, grads)
    w = (values[:n] - values[n:]) / (2 * sigma)
    es = scale_per_run(eps, w)
    pos = jax.tree.map(lambda x: x[:n], new)
    metrics_values = pair_halves((values[:n] + values[n:]) / 2)
    return reparam, es, ok, pos, out, metrics_values


@dataclasses.dataclass(frozen=True)
class Reparam(PerturbedOptions):
    """Reparameterization gradient: g = (1/N) Σ_i (∇L(θ + σε_i) + ∇L(θ − σε_i)) / 2.

    The gradient of the same Gaussian-smoothed meta-loss E_ε[L(θ + σε)] as ES (Metz et al. 2019), by
    backprop through the perturbed unrolls (antithetic pairs). Low variance on smooth, short
    problems; high variance when the unroll is long or chaotic, which is why Metz et al. 2019 mixes
    it with ES.
    """

    second_derivatives: bool = True
    name = "reparam"

    def combine(self, reparam, es, ok, axis_name):
        """The meta-gradient from the per-pair estimates, and extra metrics."""
        meta_grad, _ = masked_mean(reparam, ok, axis_name)
        return meta_grad, {}

    def build(self, rule: UpdateRule, family: TaskFamily, axis_name=None) -> Estimator:
        def init(key, theta):
            return self.init_runs(rule, family, theta, key)

        def grad(theta, runs, key):
            del key
            reparam, es, ok, pos, out, values = _perturbed_gradients(
                self, rule, family, theta, runs, self.sigma, self.second_derivatives)
            meta_grad, extra = self.combine(reparam, es, ok, axis_name)
            metrics = run_metrics(values, out, pair_halves(ok), axis_name)
            metrics.update(extra)
            return meta_grad, pos, metrics

        return Estimator(init=init, grad=grad, name=self.name)


def inverse_variance_weight(v_es, v_rp):
    """The ES weight v_rp / (v_es + v_rp) of the minimum-variance combination; a non-finite
    variance (a reparameterization gradient that exploded) gives all weight to the other."""
    v_rp = jnp.where(jnp.isfinite(v_rp), v_rp, jnp.inf)
    v_es = jnp.where(jnp.isfinite(v_es), v_es, jnp.inf)
    return jnp.where(jnp.isinf(v_rp), 1.0,
                     jnp.where(jnp.isinf(v_es), 0.0, v_rp / jnp.maximum(v_es + v_rp, 1e-30)))


def _mix(w_es, g_es, g_rp):
    """w g_es + (1 − w) g_rp, where a weight of exactly 1 (0) ignores a non-finite g_rp (g_es)
    instead of multiplying it by zero."""
    return jnp.where(w_es >= 1, g_es, jnp.where(w_es <= 0, g_rp, w_es * g_es + (1 - w_es) * g_rp))


@dataclasses.dataclass(frozen=True)
class Mixed(Reparam):
    """Inverse-variance-weighted combination of the ES and reparameterization estimates
    (Metz et al. 2019's "two unbiased gradient estimators").

    Both are computed on the same antithetic unrolls. With v_es and v_rp the total variances of
    their means, g = w g_es + (1 − w) g_rp with w = v_rp / (v_es + v_rp), the minimum-variance
    combination. Weights estimated from the very samples they weight are correlated with them
    (a heavy-tailed batch inflates its own variance and is dropped), which biases g. With
    ``cross_fit`` (the default) the pairs are split into two halves and each half's estimates
    are combined with the weight estimated on the other half; the two halves are independent,
    so E[w_B g_A] = E[w_B] ∇ and g is unbiased. The price: a half's outlier is not seen by the
    weight that multiplies it, so on heavy-tailed problems the mix keeps the tails of the
    reparameterization gradient. ``cross_fit=False`` is the same-sample form, kept to measure
    it (``lopt bench estimators``). (Weights from running variances of earlier outer steps,
    also independent, were measured and did worse on both benchmark problems.)
    """

    name = "mixed"
    cross_fit: bool = True

    def combine(self, reparam, es, ok, axis_name):
        def moments(mask):
            g_rp, v_rp, count = masked_mean_and_total_variance(reparam, mask, axis_name)
            g_es, v_es, _ = masked_mean_and_total_variance(es, mask, axis_name)
            return g_es, g_rp, v_es, v_rp, count

        if not self.cross_fit:
            g_es, g_rp, v_es, v_rp, _ = moments(ok)
            w_es = inverse_variance_weight(v_es, v_rp)
            meta_grad = jax.tree.map(lambda a, b: _mix(w_es, a, b), g_es, g_rp)
            return meta_grad, {"es_weight": w_es, "es_variance": v_es, "reparam_variance": v_rp}
        n = ok.shape[0]
        # Halves by the parity of the run's global index (devices hold contiguous blocks of
        # runs), so they are the same runs on any number of devices or hosts.
        offset = 0 if axis_name is None else jax.lax.axis_index(axis_name) * n
        first = (offset + jnp.arange(n)) % 2 == 0
        ga_es, ga_rp, va_es, va_rp, ca = moments(ok & first)
        gb_es, gb_rp, vb_es, vb_rp, cb = moments(ok & ~first)
        # A half with fewer than two samples has no variance: equal weights, still unbiased.
        w_a = jnp.where(cb >= 2, inverse_variance_weight(vb_es, vb_rp), 0.5)  # for half A
        w_b = jnp.where(ca >= 2, inverse_variance_weight(va_es, va_rp), 0.5)
        total = jnp.maximum(ca + cb, 1.0)

        def mix(a_es, a_rp, b_es, b_rp):
            # A half without samples has a zero mean (masked); its count is zero too.
            both = ca * _mix(w_a, a_es, a_rp) + cb * _mix(w_b, b_es, b_rp)
            return both / total.astype(both.dtype)

        meta_grad = jax.tree.map(mix, ga_es, ga_rp, gb_es, gb_rp)
        return meta_grad, {"es_weight": (w_a + w_b) / 2, "es_variance": (va_es + vb_es) / 2,
                           "reparam_variance": (va_rp + vb_rp) / 2}
