"""Meta-training on a mixture of structurally different task families."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lopt.evaluation import loss_curves
from lopt.outer import TBPTT, default_meta_optimizer, train
from lopt.outer.mixture import build_estimator
from lopt.rules import l2l_lstm, per_parameter_mlp
from lopt.tasks import Mixture, Task, TaskFamily, linear_family, mlp_family, quadratic_family


def _mixture():
    return Mixture((quadratic_family(dim=4), linear_family("iris", batch_size=16),
                    mlp_family("wine", hidden=(4,), activation="tanh", batch_size=16)),
                   name="three")


def _nan_family():
    def build(cfg):
        return Task(init=lambda key: {"w": jnp.zeros((2, 2))},
                    loss=lambda p, key: jnp.nan * jnp.sum(p["w"]))
    return TaskFamily(sample=lambda key: {}, build=build, name="always_nan")


def test_mixture_gradient_is_the_mean_over_families_with_healthy_runs():
    rule = l2l_lstm(hidden=4, layers=1)
    theta = rule.init_meta(jax.random.PRNGKey(0))
    opts = TBPTT(num_runs=6, truncation=3, horizon=8, second_derivatives=True)
    families = _mixture().families[:2] + (_nan_family(),)
    mixture = Mixture(families, name="with_nan")
    est = build_estimator(opts, rule, mixture)
    states = est.init(jax.random.PRNGKey(1), theta)
    assert [s.step.shape[0] for s in states] == [2, 2, 2]
    grad, _, metrics = jax.jit(est.grad)(theta, states, jax.random.PRNGKey(2))

    per = TBPTT(num_runs=2, truncation=3, horizon=8, second_derivatives=True)
    # The NaN family has no healthy run and is left out.
    healthy = [jax.jit(per.build(rule, f).grad)(theta, s, None)
               for f, s in zip(families[:2], states[:2])]
    expected = jax.tree.map(lambda *g: sum(g) / 2, *[p[0] for p in healthy])
    for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)
    assert float(metrics["ok_runs"]) == 4 and float(metrics["nonfinite_runs"]) == 2
    np.testing.assert_allclose(float(metrics["meta_loss"]),
                               np.mean([float(p[2]["meta_loss"]) for p in healthy]), rtol=1e-5)
    assert "meta_loss/quadratic4" in metrics


@pytest.mark.slow  # 30 s: in CI's second command (pytest -m slow)
def test_a_mixture_meta_trains_and_lowers_every_familys_loss():
    rule, mixture = per_parameter_mlp(hidden=8, step_scale=0.05), _mixture()
    key = jax.random.PRNGKey(7)

    @jax.jit
    def objective(theta):
        return jnp.stack([loss_curves(rule, theta, f, key, num_tasks=4, num_steps=8).mean()
                          for f in mixture.families])

    theta0 = rule.init_meta(jax.random.split(jax.random.PRNGKey(0), 3)[0])
    result = train(rule, mixture, TBPTT(num_runs=12, truncation=8, horizon=8, stagger=False,
                                        second_derivatives=False), num_steps=20, seed=0,
                   progress=False, meta_optimizer=default_meta_optimizer(1e-2))
    before, after = np.asarray(objective(theta0)), np.asarray(objective(result.theta))
    assert np.all(after < before), (before, after)
    assert np.mean(after / before) < 0.97, (before, after)
    assert set(result.history[0]) >= {"meta_loss/quadratic4", "meta_loss/iris_logistic"}


def test_runs_must_split_evenly_over_the_families():
    rule = per_parameter_mlp(hidden=4)
    with pytest.raises(ValueError, match="multiple of the 3 families"):
        build_estimator(TBPTT(num_runs=4), rule, _mixture())
