"""What every estimator shares: unroll options, per-run meta-loss terms, masked reductions."""
from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp

from lopt.outer.unroll import OBJECTIVES, REMAT, Horizon, init_inner_batch

WEIGHTINGS = ("mean", "last")
NOISE_TAG = 0x5EED


@dataclasses.dataclass(frozen=True)
class UnrollOptions:
    """Options of the truncated inner runs behind every estimator.

    ``num_tasks`` inner runs (antithetic pairs for the perturbation-based estimators) of
    ``horizon`` steps (log-uniform in [horizon, max_horizon] per run when ``max_horizon`` is
    set), advanced ``truncation`` steps per meta-gradient, staggered at the start. The meta-loss
    of a run is Σ_t w_t ℓ_t over the truncation, where ℓ_t is the training (``objective="train"``)
    or held-out (``"eval"``) loss at θ_{t+1}, clipped at ``loss_clip`` when given, and w_t = 1/K
    (``weighting="mean"``) or all weight on the last step (``"last"``). ``remat`` is what
    backpropagation through the unroll stores (``lopt.outer.unroll.scan_steps``): the default
    ``"auto"`` stores everything while that is small and keeps memory near-flat in the
    truncation when it is not (benchmarks/perf); it changes no value.
    """

    num_tasks: int = 32
    truncation: int = 20
    horizon: int = 100
    max_horizon: Optional[int] = None
    stagger: bool = True
    objective: str = "train"
    weighting: str = "mean"
    loss_clip: Optional[float] = None
    remat: str = "auto"

    def __post_init__(self):
        for field in ("num_tasks", "truncation", "horizon"):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{field} must be a positive integer, got {value!r}")
        Horizon(self.horizon, self.max_horizon)
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {list(WEIGHTINGS)}, got {self.weighting!r}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {list(OBJECTIVES)}, got {self.objective!r}")
        if self.remat not in REMAT:
            raise ValueError(f"remat must be one of {list(REMAT)}, got {self.remat!r}")
        if self.loss_clip is not None and not self.loss_clip > 0:
            raise ValueError(f"loss_clip must be a positive number, got {self.loss_clip!r}")

    @property
    def horizon_spec(self) -> Horizon:
        return Horizon(self.horizon, self.max_horizon)

    def init_runs(self, rule, family, theta, key, stagger=None):
        return init_inner_batch(rule, family, theta, key, self.num_tasks, self.horizon_spec,
                                self.stagger if stagger is None else stagger)

    def step_terms(self, out) -> jax.Array:
        """w_t ℓ_t for every step and run, [K, runs]; non-finite steps contribute 0."""
        k = out.meta_loss.shape[0]
        if self.weighting == "mean":
            w = jnp.full((k,), 1.0 / k)
        else:
            w = jnp.zeros((k,)).at[-1].set(1.0)
        ell = out.meta_loss
        if self.loss_clip is not None:
            ell = jnp.minimum(ell, self.loss_clip)
        return jnp.where(out.finite, ell, 0.0) * w[:, None].astype(ell.dtype)


@dataclasses.dataclass(frozen=True)
class PerturbedOptions(UnrollOptions):
    """UnrollOptions plus the Gaussian perturbation scale σ of ES, PES and the
    reparameterization gradient."""

    sigma: float = 0.01

    def __post_init__(self):
        super().__post_init__()
        if not self.sigma > 0:
            raise ValueError(f"sigma must be a positive number, got {self.sigma!r}")


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
    """Meta-loss (mean over ok runs), mean inner loss over finite steps, and counts."""
    meta_loss, count = masked_mean(values, ok, axis_name)
    finite = out.finite
    inner = psum(jnp.where(finite, out.loss, 0).sum(), axis_name) / jnp.maximum(
        psum(finite.sum().astype(jnp.float32), axis_name), 1.0)
    return {"meta_loss": meta_loss, "inner_loss": inner,
            "resets": psum(out.reset.sum().astype(jnp.int32), axis_name),
            "nonfinite_runs": psum((~ok).sum().astype(jnp.int32), axis_name),
            "ok_runs": count.astype(jnp.int32)}
