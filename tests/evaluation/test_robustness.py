"""Catastrophic runs, loss ratios and worst tasks on constructed curves with known answers, and
the parameter-norm growth of an evaluation run against a hand computation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lopt.evaluation.curves import curves_and_norm_growth, loss_curves
from lopt.evaluation.robustness import catastrophic, loss_ratio, worst
from lopt.rules import sgd
from lopt.tasks import quadratic_family


def test_a_run_is_catastrophic_above_its_start_or_twice_adams_final_on_its_instance():
    adam = np.array([[4.0, 4.0, 4.0, 4.0, 4.0], [1.0, 1.0, 1.0, 1.0, 1.0],
                     [0.5, 0.5, 0.1, 0.5, 0.5]])  # Adam's final on instance 2 is 0.1
    ours = np.array([[4.0, 4.0, 4.0, 4.0, 4.0], [2.0, 2.0, 2.0, 2.0, np.nan],
                     [0.9, 5.0, 0.3, 1.01, 0.2]])
    # run 0: 0.9 < 2 x 0.5 fine; run 1: above its start; run 2: 0.3 > 2 x 0.1;
    # run 3: 1.01 > 2 x 0.5; run 4 diverged (counted apart, not catastrophic)
    np.testing.assert_array_equal(catastrophic(ours, adam), [False, True, True, True, False])
    # compared at the learned run's own last step when Adam ran longer
    assert not catastrophic(ours[:2, :1], adam[:, :1]).any()
    with pytest.raises(ValueError, match="same runs"):
        catastrophic(ours, adam[:, :3])


def test_loss_ratio_is_mean_final_over_the_references_and_worst_picks_the_extreme():
    ref = np.array([[2.0, 2.0], [1.0, 3.0]])
    assert loss_ratio(np.array([[2.0, 2.0], [4.0, 8.0]]), ref) == pytest.approx(3.0)
    assert loss_ratio(np.array([[2.0, 2.0], [np.nan, 8.0]]), ref) == pytest.approx(4.0)
    assert loss_ratio(np.array([[2.0], [np.nan]]), ref[:, :1]) == float("inf")
    assert loss_ratio(ref, np.array([[2.0], [np.nan]])) is None
    assert worst([1.5, None, 0.4, 2.0], higher_is_better=True) == {"value": 0.4, "index": 2}
    assert worst([1.5, None, 0.4, 2.0], higher_is_better=False) == {"value": 2.0, "index": 3}
    assert worst([None], higher_is_better=True) is None


def test_norm_growth_is_the_ratio_of_the_parameters_global_norms_per_run():
    family = quadratic_family(dim=4)
    key = jax.random.PRNGKey(0)
    rule = sgd(0.01)
    curves, growth = curves_and_norm_growth(rule, {}, family, key, num_tasks=3, num_steps=5)
    np.testing.assert_allclose(curves, loss_curves(rule, {}, family, key, num_tasks=3,
                                                   num_steps=5))
    # by hand: the same instances, five plain gradient steps
    batch = __import__("lopt").outer.unroll.UnrollOptions(
        num_runs=3, truncation=5, horizon=6, stagger=False, remat="none").init_runs(
        rule, family, {}, key)
    for i in range(3):
        cfg = jax.tree.map(lambda x: x[i], batch.cfg)  # noqa: B023
        task = family.build(cfg)
        params = jax.tree.map(lambda x: x[i], batch.params)  # noqa: B023
        start = jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree.leaves(params)))
        for _ in range(5):
            grads = jax.grad(task.loss)(params, None)
            params = jax.tree.map(lambda p, g: p - 0.01 * g, params, grads)
        end = jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree.leaves(params)))
        np.testing.assert_allclose(growth[i], end / start, rtol=1e-4)
