"""Every estimator against the exact gradient of its target, with tolerances from its variance.

The inner problem is small enough to be exact (``lopt.outer.smoothed_exact``): a fixed 2-D
quadratic trained for H = 8 steps by momentum SGD whose learning rate and momentum are the
meta-parameters, so the gradient of the Gaussian-smoothed meta-loss E_ε[L(θ + σε)] is computed
exactly by Gauss–Hermite quadrature. Each estimator's mean over many estimates must match its
target within 5 standard errors measured from those estimates; the truncated estimators must
miss the full-horizon gradient by more than that.
"""
import jax
import numpy as np
import pytest

from lopt.outer import ES, PES, TBPTT, Mixed, Reparam
from lopt.outer.smoothed_exact import (
    THETA,
    H,
    bias_and_mse,
    estimates,
    plain_gradient,
    reference_meta_loss,
    smoothed_gradient,
)

Z = 5.0  # standard errors allowed


def _vec(g):
    return np.array([float(g["lr"]), float(g["mom"])])


def run_sums(rows, truncations):
    """Per inner run, the mean over its truncations' estimates (an estimate of ∇L)."""
    return rows.reshape(-1, truncations, 2).mean(axis=1)


def within(samples, target):
    mean = samples.mean(axis=0)
    se = samples.std(axis=0, ddof=1) / np.sqrt(len(samples))
    return np.abs(mean - target) <= Z * se, mean, se


@pytest.fixture(scope="module", autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


# Small enough that every perturbed run stays stable (no heavy tails from lr near 0), large
# enough that the smoothed gradient differs measurably from the plain one.
SIGMA = 0.05


@pytest.fixture(scope="module")
def exact():
    return {"smoothed": smoothed_gradient(SIGMA),
            "plain": _vec(jax.grad(reference_meta_loss)(THETA))}


def test_smoothing_matters_at_this_sigma(exact):
    """The smoothed and plain gradients differ, so matching the smoothed one is a real check."""
    rel = np.abs(exact["smoothed"] - exact["plain"]) / np.abs(exact["plain"])
    assert rel.max() > 0.02, rel


def test_full_horizon_tbptt_is_the_exact_gradient(exact):
    rows = estimates(TBPTT(num_runs=2, truncation=H, horizon=H, stagger=False,
                           second_derivatives=True), calls=2)
    np.testing.assert_allclose(rows, np.stack([exact["plain"]] * 2), rtol=1e-9)


@pytest.mark.parametrize("name,estimator,calls", [
    # ES has ~1000x the variance of the others here: more calls to resolve the smoothing.
    ("es_full_horizon", ES(num_runs=64, horizon=H, sigma=SIGMA, full_horizon=True), 3000),
    ("reparam", Reparam(num_runs=64, truncation=H, horizon=H, stagger=False, sigma=SIGMA), 1000),
    ("mixed", Mixed(num_runs=64, truncation=H, horizon=H, stagger=False, sigma=SIGMA), 1000),
])
def test_unbiased_for_the_smoothed_gradient(exact, name, estimator, calls):
    samples = estimates(estimator, calls=calls)
    ok, mean, se = within(samples, exact["smoothed"])
    assert ok.all(), (name, mean, exact["smoothed"], se)
    # The tolerance is tight enough to reject the unsmoothed gradient.
    assert not within(samples, exact["plain"])[0].all(), (name, mean, exact["plain"], se)


def test_mixed_bias_and_mse_against_the_exact_smoothed_gradient():
    """At σ = 0.1 the perturbed unrolls are heavy-tailed. The cross-fitted mix (weights from the
    other half of the pairs) stays within 5 standard errors of the exact smoothed gradient and
    has no more than 1.1× the mean squared error of the better of its two parts; weights
    estimated from the same samples they weight do worse than the better part alone."""
    sigma = 0.1
    target = smoothed_gradient(sigma)
    kw = dict(num_tasks=8, truncation=H, horizon=H, stagger=False, sigma=sigma)
    stats = {name: bias_and_mse(estimates(est, calls=1000), target)
             for name, est in (("es", ES(**kw)), ("reparam", Reparam(**kw)),
                               ("mixed", Mixed(**kw)),
                               ("mixed_same", Mixed(**kw, cross_fit=False)))}
    best_part = min(stats["es"]["mse"], stats["reparam"]["mse"])
    assert np.all(np.abs(stats["mixed"]["bias_in_se"]) <= Z), stats["mixed"]
    assert stats["mixed"]["mse"] <= 1.1 * best_part, stats
    assert stats["mixed_same"]["mse"] > 1.1 * best_part, stats
    assert stats["mixed"]["mse"] < stats["mixed_same"]["mse"], stats


# With truncations of 2 steps, the runs are cut into 4 pieces. PES is unbiased for the full
# horizon; truncated ES and TBPTT are not. σ is small here so that the smoothing's own effect
# (checked against the quadrature) is far below the tolerance and the target is ∇L itself.
SMALL_SIGMA = 0.01
K = 2


def test_pes_matches_the_full_horizon_gradient_and_truncation_is_biased(exact):
    target = exact["plain"]
    smoothing = np.abs(smoothed_gradient(SMALL_SIGMA) - target)
    pes = run_sums(estimates(PES(num_runs=32, truncation=K, horizon=H, stagger=False,
                                 sigma=SMALL_SIGMA), calls=4 * 100), H // K)
    ok, mean, se = within(pes, target)
    assert ok.all(), (mean, target, se)
    assert (smoothing < 0.05 * Z * se).all()

    tes = run_sums(estimates(ES(num_runs=32, truncation=K, horizon=H, stagger=False,
                                sigma=SMALL_SIGMA), calls=4 * 100), H // K)
    ok_tes, mean_tes, se_tes = within(tes, target)
    assert not ok_tes.all(), (mean_tes, target, se_tes)

    tbptt = run_sums(estimates(TBPTT(num_runs=2, truncation=K, horizon=H, stagger=False,
                                     second_derivatives=True), calls=4), H // K)[0]
    assert np.max(np.abs(tbptt - target) / np.abs(target)) > 0.1
    # Truncated ES and TBPTT estimate the same truncated objective: their biases agree.
    assert np.all(np.abs(mean_tes - tbptt) <= Z * se_tes + 0.02 * np.abs(tbptt))


def test_pes_with_resets_inside_staggered_truncations_is_unbiased():
    """Horizon 8 in truncations of 3 with staggered starts: runs end inside truncations at
    every phase. Averaged over a long stream of outer steps, PES estimates the full-horizon
    gradient; truncated ES, on the same stream, is far off. Standard errors come from means
    of blocks of 40 consecutive estimates (an estimate's ξ correlates it with its run's
    earlier ones)."""
    target = exact_plain = plain_gradient()

    def block_means(estimator):
        rows = estimates(estimator, calls=8 + 20 * 40)[8:]  # past the first partial runs
        return rows.reshape(20, 40, 2).mean(axis=1)

    kw = dict(num_tasks=32, truncation=3, horizon=H, sigma=SMALL_SIGMA)
    ok, mean, se = within(block_means(PES(**kw)), target)
    assert ok.all(), (mean, target, se)
    assert (np.abs(smoothed_gradient(SMALL_SIGMA) - exact_plain) < 0.05 * Z * se).all()
    ok_es, mean_es, se_es = within(block_means(ES(**kw)), target)
    assert not ok_es.any(), (mean_es, target, se_es)


@pytest.mark.parametrize("weighting,loss_clip", [("last", None), ("mean", 0.3)])
def test_weighting_and_loss_clip_through_tbptt_and_es(weighting, loss_clip):
    """All weight on the last step, or each step's loss clipped (f starts at 2 and falls below
    0.3 within the run): full-horizon TBPTT is the exact gradient of that meta-loss, and
    full-horizon ES's mean is its smoothed gradient."""
    opts = dict(weighting=weighting, loss_clip=loss_clip)
    plain = plain_gradient(**opts)
    assert np.max(np.abs(plain - plain_gradient()) / np.abs(plain_gradient())) > 0.1
    rows = estimates(TBPTT(num_runs=2, truncation=H, horizon=H, stagger=False,
                           second_derivatives=True, **opts), calls=2)
    np.testing.assert_allclose(rows, np.stack([plain] * 2), rtol=1e-9)
    samples = estimates(ES(num_runs=64, horizon=H, sigma=SIGMA, full_horizon=True, **opts),
                        calls=1000)
    ok, mean, se = within(samples, smoothed_gradient(SIGMA, nodes=40, **opts))
    assert ok.all(), (mean, se)
    # ...and not the smoothed gradient of the plain mean meta-loss.
    assert not within(samples, smoothed_gradient(SIGMA))[0].all()
