"""What every estimator shares: unroll options, per-run meta-loss terms, masked reductions."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from lopt.outer.base import option
from lopt.outer.unroll import WEIGHTINGS, UnrollOptions, WithUnroll  # noqa: F401 (lopt 0.1 imported the first two here; until 0.4)

NOISE_TAG = 0x5EED


@dataclasses.dataclass(frozen=True)
class PerturbedOptions(WithUnroll):
    """The unroll options plus the Gaussian perturbation scale σ of ES, PES and the
    reparameterization gradient."""

    sigma: float = option(0.01, flag="the Gaussian perturbation's scale")

    def __post_init__(self):
        super().__post_init__()
        # Below ~1e-6 a perturbation of an O(1) theta rounds away in float32.
        if isinstance(self.sigma, bool) or not 1e-6 <= self.sigma <= 100.0:
            raise ValueError(f"sigma must be a number in [1e-06, 100]; got {self.sigma!r}")


def perturbations(theta, keys):
    """ε_i ~ N(0, I) shaped like theta, one per run, drawn from each run's own key."""
    leaves, treedef = jax.tree.flatten(theta)

    def one(key):
        ks = jax.random.split(jax.random.fold_in(key, NOISE_TAG), max(len(leaves), 1))
        return jax.tree.unflatten(treedef, [jax.random.normal(k, jnp.shape(x), jnp.result_type(x))
                                            for k, x in zip(ks, leaves)])

    return jax.vmap(one)(keys)


def psum(x, axis_name):
    return x if axis_name is None else jax.lax.psum(x, axis_name)


def masked_mean(tree, ok, axis_name=None):
    """Mean over the runs flagged ``ok`` (leading run axis), across devices when ``axis_name``.

    A run that is not ok contributes exact zeros (``where``, not multiplication), so NaN or inf
    in its values cannot reach the result.
    """
    count = psum(ok.sum().astype(jnp.float32), axis_name)

    def mean(x):
        mask = ok.reshape(ok.shape + (1,) * (x.ndim - 1))
        total = psum(jnp.where(mask, x, 0).sum(axis=0), axis_name)
        return total / jnp.maximum(count, 1.0).astype(x.dtype)

    return jax.tree.map(mean, tree), count


def masked_mean_and_total_variance(tree, ok, axis_name=None):
    """Mean over ok runs and the total (summed over coordinates) variance of the mean."""
    mean, count = masked_mean(tree, ok, axis_name)

    def sq_dev(x, m):
        mask = ok.reshape(ok.shape + (1,) * (x.ndim - 1))
        return psum(jnp.where(mask, (x - m) ** 2, 0).sum(), axis_name)

    ss = sum(jax.tree.leaves(jax.tree.map(sq_dev, tree, mean)), jnp.zeros(()))
    sample_var = ss / jnp.maximum(count - 1.0, 1.0)
    return mean, sample_var / jnp.maximum(count, 1.0), count


def run_metrics(values, out, ok, axis_name=None) -> dict:
    """Meta-loss (mean over ok runs), mean inner loss over finite steps, and counts (the inner
    steps unrolled among them: runs × steps, over every device)."""
    meta_loss, count = masked_mean(values, ok, axis_name)
    finite = out.finite
    inner = psum(jnp.where(finite, out.loss, 0).sum(), axis_name) / jnp.maximum(
        psum(finite.sum().astype(jnp.float32), axis_name), 1.0)
    return {"meta_loss": meta_loss, "inner_loss": inner,
            "resets": psum(out.reset.sum().astype(jnp.int32), axis_name),
            "nonfinite_runs": psum((~ok).sum().astype(jnp.int32), axis_name),
            "ok_runs": count.astype(jnp.int32),
            "inner_steps": psum(jnp.asarray(out.loss.size, jnp.int32), axis_name)}


def pair_halves(x):
    """[x; x]: one value for each half of the antithetic pairs."""
    return jnp.concatenate([x, x])


def antithetic_thetas(theta, eps, sigma):
    """[θ + σε_i ; θ − σε_i] with a leading run axis of 2N."""
    return jax.tree.map(lambda t, e: jnp.concatenate([t + sigma * e, t - sigma * e]), theta, eps)


def scale_per_run(eps, weights):
    """ε_i · w_i for every run i (the leading axis of each leaf of ``eps``)."""
    return jax.tree.map(lambda e: e * weights.reshape((-1,) + (1,) * (e.ndim - 1)), eps)
