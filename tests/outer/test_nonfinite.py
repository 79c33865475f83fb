"""Planted non-finite inner losses reset their runs and are masked out of the meta-gradient."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lopt.outer import ES, PES, TBPTT, Mixed, Reparam
from lopt.outer.es import PESState
from lopt.rules import l2l_lstm
from lopt.tasks import Task, TaskFamily

N = 8


def poisoned_family(rate=0.4):
    """Quadratics of which a fraction have a NaN loss everywhere (a planted failure)."""

    def sample(key):
        kw, ky, kp = jax.random.split(key, 3)
        return {"W": jax.random.normal(kw, (3, 3)), "y": jax.random.normal(ky, (3,)),
                "poison": jax.random.bernoulli(kp, rate)}

    def build(cfg):
        def loss(params, key):
            value = jnp.sum((cfg["W"] @ params["x"] - cfg["y"]) ** 2)
            return jnp.where(cfg["poison"], jnp.nan, value)

        return Task(init=lambda key: {"x": 0.1 * jax.random.normal(key, (3,))}, loss=loss)

    return TaskFamily(sample=sample, build=build, name="poisoned")


def _subset(tree, idx):
    return jax.tree.map(lambda x: x[idx], tree)


@pytest.mark.parametrize("estimator", [
    TBPTT(num_runs=N, truncation=3, horizon=10, second_derivatives=True),
    ES(num_runs=N, truncation=3, horizon=10, sigma=0.05),
    PES(num_runs=N, truncation=3, horizon=10, sigma=0.05),
    Reparam(num_runs=N, truncation=3, horizon=10, sigma=0.05),
    # Cross-fitted halves follow run indices, so a subset forms other halves: the same-sample
    # mix is compared with its subset here, the cross-fitted one below.
    Mixed(num_runs=N, truncation=3, horizon=10, sigma=0.05, cross_fit=False),
], ids=lambda e: type(e).__name__)
def test_poisoned_runs_are_reset_and_left_out(estimator):
    rule, family = l2l_lstm(hidden=4, layers=1), poisoned_family()
    theta = rule.init_meta(jax.random.PRNGKey(0))
    theta["out"]["w"] = theta["out"]["w"] * 20
    est = estimator.build(rule, family)
    state = est.init(jax.random.PRNGKey(1), theta)
    runs = state.pos if isinstance(state, PESState) else state
    poison = np.asarray(runs.cfg["poison"])
    assert 0 < poison.sum() < N
    healthy = np.flatnonzero(~poison)

    grad, new_state, metrics = jax.jit(est.grad)(theta, state, None)
    ref, _, ref_metrics = jax.jit(est.grad)(theta, _subset(state, healthy), None)

    for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(ref)):
        assert np.all(np.isfinite(a))
        # float32 reductions over different batch sizes round differently; ES divides by σ.
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())
    assert int(metrics["nonfinite_runs"]) >= int(poison.sum())  # counted (antithetic: per half)
    np.testing.assert_allclose(metrics["meta_loss"], ref_metrics["meta_loss"], rtol=1e-5)
    new_runs = new_state.pos if isinstance(new_state, PESState) else new_state
    # Every poisoned run was replaced: it is on a fresh instance, with finite parameters.
    replaced = np.asarray(new_runs.key)[poison]
    assert not np.any(np.all(replaced == np.asarray(runs.key)[poison], axis=-1))
    assert np.all(np.isfinite(np.asarray(new_runs.params["x"])))


def test_all_runs_non_finite_skips_the_step_and_logs_it(tmp_path):
    import json

    from lopt.outer import train

    rule = l2l_lstm(hidden=4, layers=1)
    log = tmp_path / "log.jsonl"
    result = train(rule, poisoned_family(rate=1.0), TBPTT(num_runs=4, truncation=2, horizon=5),
                   num_steps=2, seed=1, progress=False, log_path=str(log))
    theta0 = rule.init_meta(jax.random.split(jax.random.PRNGKey(1), 3)[0])
    for a, b in zip(jax.tree.leaves(theta0), jax.tree.leaves(result.theta)):
        np.testing.assert_array_equal(a, b)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["skipped"] for r in records] == [1, 1]
    assert [r["nonfinite_runs"] for r in records] == [4, 4]
    # No run finished: the loss is unknown (null), not 0.0.
    assert [r["meta_loss"] for r in records] == [None, None]
    assert [r["inner_loss"] for r in records] == [None, None]


def late_blowup_family():
    """Quadratics of which some turn NaN from their fourth inner step on (a planted mid-run
    failure): their loss is NaN once the parameters have moved far enough from the start."""

    def sample(key):
        kw, ky, kp = jax.random.split(key, 3)
        return {"W": jax.random.normal(kw, (3, 3)), "y": jax.random.normal(ky, (3,)),
                "poison": jax.random.bernoulli(kp, 0.4)}

    def build(cfg):
        def loss(params, key):
            value = jnp.sum((cfg["W"] @ params["x"] - cfg["y"]) ** 2)
            return jnp.where(cfg["poison"] & (params["n"] >= 3), jnp.nan, value)

        def init(key):
            return {"x": 0.1 * jax.random.normal(key, (3,)), "n": jnp.zeros(())}

        return Task(init=init, loss=loss)

    return TaskFamily(sample=sample, build=build, name="late_blowup")


def step_counting_rule():
    """SGD on x whose update also counts the steps in params['n'] (θ: the learning rate)."""
    from lopt.rules import UpdateRule

    def update(theta, state, grads, params, loss=None):
        return {"x": -theta["lr"] * grads["x"], "n": jnp.ones(())}, state

    return UpdateRule(init_meta=lambda key: {"lr": jnp.asarray(0.05)},
                      init=lambda theta, params: (), update=update, name="counting_sgd")


def test_full_horizon_es_builds_whole_fresh_runs_every_estimate():
    """A pair that turns non-finite at its fourth step is left out, the next estimate starts
    every run from step 0 again, and the estimate depends on nothing but the runs' keys."""
    rule, family = step_counting_rule(), late_blowup_family()
    est = ES(num_runs=N, horizon=6, sigma=0.01, full_horizon=True).build(rule, family)
    theta = rule.init_meta(None)
    grad = jax.jit(est.grad)
    state = est.init(jax.random.PRNGKey(4), theta)
    for _ in range(3):
        fresh = jax.vmap(lambda k: family.sample(jax.random.split(k, 4)[0]))(state.key)
        poisoned = int(np.asarray(fresh["poison"]).sum())
        g, new_state, metrics = grad(theta, state, None)
        assert np.isfinite(float(g["lr"]))
        assert int(metrics["ok_runs"]) == 2 * (N - poisoned)  # counted per half
        # Whatever the runs' steps and parameters, only their keys matter: no persistent phase.
        scrambled = state._replace(step=state.step + 3,
                                   params=jax.tree.map(lambda x: x * jnp.nan, state.params))
        g2, _, _ = grad(theta, scrambled, None)
        np.testing.assert_array_equal(np.asarray(g2["lr"]), np.asarray(g["lr"]))
        assert np.all(np.asarray(new_state.step) == 0)
        state = new_state


def test_cross_fitted_mix_ignores_what_poisoned_runs_hold():
    """Whatever the poisoned runs' parameters are, the cross-fitted mix is the same and finite:
    they are masked out of both halves' means and variances."""
    rule, family = l2l_lstm(hidden=4, layers=1), poisoned_family()
    theta = rule.init_meta(jax.random.PRNGKey(0))
    theta["out"]["w"] = theta["out"]["w"] * 20
    est = Mixed(num_runs=N, truncation=3, horizon=10, sigma=0.05).build(rule, family)
    state = est.init(jax.random.PRNGKey(1), theta)
    poison = np.asarray(state.cfg["poison"])
    assert 0 < poison.sum() < N
    grad_fn = jax.jit(est.grad)
    grad, _, metrics = grad_fn(theta, state, None)
    mask = jnp.asarray(poison)[:, None]
    other = state._replace(params={"x": jnp.where(mask, 1e3, state.params["x"])})
    grad2, _, _ = grad_fn(theta, other, None)
    for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(grad2)):
        assert np.all(np.isfinite(a)) and np.abs(a).max() > 0
        np.testing.assert_array_equal(a, b)
    assert 0 < int(metrics["ok_runs"]) <= 2 * (N - int(poison.sum()))
