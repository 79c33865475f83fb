"""Every estimator against the exact gradient of its target, with tolerances from its variance.

The inner problem is small enough to be exact: a fixed 2-D quadratic f(x) = ‖Wx − y‖² from a
fixed start, trained for H = 8 steps by momentum SGD whose learning rate and momentum are the
meta-parameters θ = (lr, mom). The meta-loss L(θ) = (1/H) Σ_t f(x_{t+1}) is a polynomial in θ
of degree ≤ 2H, so the gradient of its Gaussian smoothing E_ε[L(θ + σε)] is computed exactly
by Gauss–Hermite quadrature. Each estimator's mean over many estimates must match its target
within 5 standard errors measured from those estimates; the truncated estimators must miss
the full-horizon gradient by more than that.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lopt.outer import ES, PES, TBPTT, Mixed, Reparam
from lopt.rules import UpdateRule
from lopt.tasks import Task, fixed_family

H = 8
W = np.array([[1.0, 0.4], [0.2, 0.6]])
Y = np.array([1.0, -1.0])
THETA = {"lr": 0.2, "mom": 0.2}
Z = 5.0  # standard errors allowed


def momentum_rule() -> UpdateRule:
    def update(theta, state, grads, params, loss):
        m = jax.tree.map(lambda m, g: theta["mom"] * m + g, state, grads)
        return jax.tree.map(lambda m: -theta["lr"] * m, m), m

    return UpdateRule(init_meta=lambda key: {k: jnp.asarray(v) for k, v in THETA.items()},
                      init=lambda theta, params: jax.tree.map(jnp.zeros_like, params),
                      update=update, name="momentum_meta")


def reference_meta_loss(theta):
    """L(θ), written out independently of lopt's unroll."""
    x, m, total = jnp.zeros(2), jnp.zeros(2), 0.0
    for _ in range(H):
        g = 2 * W.T @ (W @ x - Y)
        m = theta["mom"] * m + g
        x = x - theta["lr"] * m
        total = total + jnp.sum((W @ x - Y) ** 2)
    return total / H


def smoothed_gradient(sigma, nodes=24):
    """∇_θ E_ε[L(θ + σε)] by tensor-product Gauss–Hermite quadrature (exact for this L)."""
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / np.sqrt(2 * np.pi)
    grad = jax.jit(jax.grad(reference_meta_loss))
    total = {k: 0.0 for k in THETA}
    for i in range(nodes):
        for j in range(nodes):
            g = grad({"lr": THETA["lr"] + sigma * x[i], "mom": THETA["mom"] + sigma * x[j]})
            for k in THETA:
                total[k] += w[i] * w[j] * float(g[k])
    return np.array([total["lr"], total["mom"]])


def _vec(g):
    return np.array([float(g["lr"]), float(g["mom"])])


def estimates(estimator, calls, seed=0):
    """``calls`` consecutive meta-gradient estimates, as rows [lr, mom]."""
    task = Task(init=lambda key: {"x": jnp.zeros(2)},
                loss=lambda p, key: jnp.sum((jnp.asarray(W) @ p["x"] - jnp.asarray(Y)) ** 2))
    rule, family = momentum_rule(), fixed_family(task)
    est = estimator.build(rule, family)
    theta = rule.init_meta(None)

    def body(state, _):
        g, state, _ = est.grad(theta, state, None)
        return state, _vec_jnp(g)

    state = est.init(jax.random.PRNGKey(seed), theta)
    _, rows = jax.jit(lambda s: jax.lax.scan(body, s, None, length=calls))(state)
    return np.asarray(rows)


def _vec_jnp(g):
    return jnp.stack([g["lr"], g["mom"]])


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
    rows = estimates(TBPTT(num_tasks=2, truncation=H, horizon=H, stagger=False,
                           second_derivatives=True), calls=2)
    np.testing.assert_allclose(rows, np.stack([exact["plain"]] * 2), rtol=1e-9)


@pytest.mark.parametrize("name,estimator", [
    ("es_full_horizon", ES(num_tasks=64, horizon=H, sigma=SIGMA, full_horizon=True)),
    ("reparam", Reparam(num_tasks=64, truncation=H, horizon=H, stagger=False, sigma=SIGMA)),
    ("mixed", Mixed(num_tasks=64, truncation=H, horizon=H, stagger=False, sigma=SIGMA)),
])
def test_unbiased_for_the_smoothed_gradient(exact, name, estimator):
    samples = estimates(estimator, calls=1000)
    ok, mean, se = within(samples, exact["smoothed"])
    assert ok.all(), (name, mean, exact["smoothed"], se)
    # The tolerance is tight enough to reject the unsmoothed gradient.
    assert not within(samples, exact["plain"])[0].all(), (name, mean, exact["plain"], se)


def test_mixed_has_no_more_variance_than_its_parts():
    kw = dict(num_tasks=8, truncation=H, horizon=H, stagger=False, sigma=SIGMA)
    var = {name: estimates(est, calls=150).var(axis=0).sum()
           for name, est in (("mixed", Mixed(**kw)), ("reparam", Reparam(**kw)),
                             ("es", ES(**kw)))}
    assert var["mixed"] <= 1.2 * min(var["reparam"], var["es"])


# With truncations of 2 steps, the runs are cut into 4 pieces. PES is unbiased for the full
# horizon; truncated ES and TBPTT are not. σ is small here so that the smoothing's own effect
# (checked against the quadrature) is far below the tolerance and the target is ∇L itself.
SMALL_SIGMA = 0.01
K = 2


def test_pes_matches_the_full_horizon_gradient_and_truncation_is_biased(exact):
    target = exact["plain"]
    smoothing = np.abs(smoothed_gradient(SMALL_SIGMA) - target)
    pes = run_sums(estimates(PES(num_tasks=32, truncation=K, horizon=H, stagger=False,
                                 sigma=SMALL_SIGMA), calls=4 * 100), H // K)
    ok, mean, se = within(pes, target)
    assert ok.all(), (mean, target, se)
    assert (smoothing < 0.05 * Z * se).all()

    tes = run_sums(estimates(ES(num_tasks=32, truncation=K, horizon=H, stagger=False,
                                sigma=SMALL_SIGMA), calls=4 * 100), H // K)
    ok_tes, mean_tes, se_tes = within(tes, target)
    assert not ok_tes.all(), (mean_tes, target, se_tes)

    tbptt = run_sums(estimates(TBPTT(num_tasks=2, truncation=K, horizon=H, stagger=False,
                                     second_derivatives=True), calls=4), H // K)[0]
    assert np.max(np.abs(tbptt - target) / np.abs(target)) > 0.1
    # Truncated ES and TBPTT estimate the same truncated objective: their biases agree.
    assert np.all(np.abs(mean_tes - tbptt) <= Z * se_tes + 0.02 * np.abs(tbptt))
