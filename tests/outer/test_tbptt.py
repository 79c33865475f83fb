"""TBPTT meta-gradients against central finite differences of an independent Python-loop unroll."""
import jax
import jax.flatten_util
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lopt.outer import TBPTT
from lopt.rules import l2l_lstm
from lopt.tasks import quadratic_family

K = 6
NUM_TASKS = 2


def reference_meta_loss(rule, family, theta, batch, frozen_grads=None, frozen_losses=None):
    """(1/N) Σ_i (1/K) Σ_t f_i(θ_{t+1}), unrolled step by step in Python.

    With ``frozen_grads`` (and ``frozen_losses``) the rule is fed those recorded gradients
    (losses) instead of ∇f(θ_t) (f(θ_t)): the function whose derivative TBPTT without second
    derivatives computes (∂∇_t/∂φ = 0, and the loss a rule reads is a constant too).
    """
    total, recorded, recorded_losses = 0.0, [], []
    for i in range(NUM_TASKS):
        take = lambda x, i=i: x[i]
        task = family.build(jax.tree.map(take, batch.cfg))
        params = jax.tree.map(take, batch.params)
        state = jax.tree.map(take, batch.rule_state)
        acc, grads_i, losses_i = 0.0, [], []
        for t in range(K):
            loss, grads = jax.value_and_grad(task.loss)(params, None)
            if frozen_grads is not None:
                grads = frozen_grads[i][t]
            if frozen_losses is not None:
                loss = frozen_losses[i][t]
            grads_i.append(grads)
            losses_i.append(loss)
            updates, state = rule.update(theta, state, grads, params, loss)
            params = optax.apply_updates(params, updates)
            acc = acc + task.loss(params, None)
        recorded.append(grads_i)
        recorded_losses.append(losses_i)
        total = total + acc / K
    return total / NUM_TASKS, recorded, recorded_losses


@pytest.fixture(scope="module")
def setup():
    with jax.enable_x64(True):
        rule = l2l_lstm(hidden=5, layers=2)
        family = quadratic_family(dim=3)
        theta = rule.init_meta(jax.random.PRNGKey(0))
        theta["out"]["w"] = theta["out"]["w"] * 30.0
        yield rule, family, theta


def _directions(theta, n):
    leaves, treedef = jax.tree.flatten(theta)
    out = []
    for d in range(n):
        keys = jax.random.split(jax.random.PRNGKey(100 + d), len(leaves))
        v = [jax.random.normal(k, leaf.shape, leaf.dtype) for k, leaf in zip(keys, leaves)]
        norm = jnp.sqrt(sum(jnp.sum(x**2) for x in v))
        out.append(jax.tree.unflatten(treedef, [x / norm for x in v]))
    return out


def _vdot(a, b):
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.mark.parametrize("second_derivatives", [True, False])
def test_tbptt_matches_central_finite_differences(setup, second_derivatives):
    rule, family, theta = setup
    with jax.enable_x64(True):
        est = TBPTT(num_runs=NUM_TASKS, truncation=K, horizon=10_000,
                    second_derivatives=second_derivatives, stagger=False).build(rule, family)
        batch = est.init(jax.random.PRNGKey(1), theta)
        meta_grad, _, metrics = jax.jit(est.grad)(theta, batch, jax.random.PRNGKey(2))
        assert jax.tree.leaves(meta_grad)[0].dtype == jnp.float64

        value, recorded, _ = reference_meta_loss(rule, family, theta, batch)
        np.testing.assert_allclose(metrics["meta_loss"], value, rtol=1e-10)
        frozen = None if second_derivatives else recorded
        objective = jax.jit(lambda th: reference_meta_loss(rule, family, th, batch, frozen)[0])

        eps = 1e-6
        for v in _directions(theta, 3):
            plus = objective(jax.tree.map(lambda t, d: t + eps * d, theta, v))
            minus = objective(jax.tree.map(lambda t, d: t - eps * d, theta, v))
            fd = (plus - minus) / (2 * eps)
            np.testing.assert_allclose(_vdot(meta_grad, v), fd, rtol=1e-6, atol=1e-9)


def test_second_derivatives_change_the_gradient(setup):
    """The two estimates differ by far more than the 1e-6 finite-difference tolerance above, so
    that test would catch one estimator computing the other's gradient."""
    rule, family, theta = setup
    with jax.enable_x64(True):
        grads = []
        for sd in (True, False):
            est = TBPTT(num_runs=NUM_TASKS, truncation=K, horizon=10_000,
                        second_derivatives=sd, stagger=False).build(rule, family)
            batch = est.init(jax.random.PRNGKey(1), theta)
            grad = jax.jit(est.grad)(theta, batch, jax.random.PRNGKey(2))[0]
            grads.append(jax.flatten_util.ravel_pytree(grad)[0])
        rel = jnp.linalg.norm(grads[0] - grads[1]) / jnp.linalg.norm(grads[0])
        assert float(rel) > 5e-5


def test_without_second_derivatives_the_loss_a_rule_reads_is_a_constant():
    """The hierarchical rule reads the training loss. Without second derivatives TBPTT's
    gradient is that of the unroll with the recorded gradients and losses frozen; freezing the
    gradients alone gives a measurably different answer."""
    from lopt.rules import hierarchical

    with jax.enable_x64(True):
        rule, family = hierarchical(hidden=4, tensor_hidden=3, context=2, step_scale=0.05), \
            quadratic_family(dim=3)
        theta = rule.init_meta(jax.random.PRNGKey(0))
        est = TBPTT(num_runs=NUM_TASKS, truncation=K, horizon=10_000, second_derivatives=False,
                    stagger=False).build(rule, family)
        batch = est.init(jax.random.PRNGKey(1), theta)
        meta_grad, _, _ = jax.jit(est.grad)(theta, batch, None)
        _, grads, losses = reference_meta_loss(rule, family, theta, batch)
        both = jax.jit(lambda th: reference_meta_loss(rule, family, th, batch, grads, losses)[0])
        only_grads = jax.jit(lambda th: reference_meta_loss(rule, family, th, batch, grads)[0])
        eps = 1e-6
        for v in _directions(theta, 2):
            fd = {}
            for name, f in (("both", both), ("grads", only_grads)):
                plus = f(jax.tree.map(lambda t, d: t + eps * d, theta, v))
                minus = f(jax.tree.map(lambda t, d: t - eps * d, theta, v))
                fd[name] = float((plus - minus) / (2 * eps))
            got = float(_vdot(meta_grad, v))
            np.testing.assert_allclose(got, fd["both"], rtol=1e-6, atol=1e-9)
            assert abs(fd["grads"] - fd["both"]) > 1e-5 * abs(fd["both"]), fd  # 10x the tolerance
