"""The benchmark metrics on constructed curves with known answers."""
import jax.numpy as jnp
import numpy as np
import pytest

from lopt import metrics, rules


def linear_curves(start, stop, steps, runs=3, spread=0.5):
    """Runs that fall linearly from start to stop, offset by ±spread so their mean is exact."""
    base = np.linspace(start, stop, steps + 1)[:, None]
    return base + np.linspace(-spread, spread, runs)[None, :]


def test_final_auc_and_divergence():
    curves = linear_curves(10, 0, 10)
    np.testing.assert_allclose(metrics.final_loss(curves), [-0.5, 0.0, 0.5])
    # Steps 1…10 of 10 − t average 4.5; the runs sit 0.5 below and above.
    np.testing.assert_allclose(metrics.area_under_curve(curves), [4.0, 4.5, 5.0])
    broken = curves.copy()
    broken[4:, 1] = np.nan
    assert metrics.divergence_rate(broken) == pytest.approx(1 / 3)
    assert np.isnan(metrics.area_under_curve(broken)[1])


def test_speedup_over_a_reference():
    """Adam's mean curve is 10 − t over 10 steps; a rule at 4 after 5 steps saves Adam's 6
    steps in 5: speedup 1.2. A rule at −1 Adam never reaches: at least 10/5 = 2."""
    adam = linear_curves(10, 0, 10)
    assert metrics.steps_to_reach(adam.mean(axis=1), 4.0) == 6
    fast = metrics.speedup(linear_curves(10, 4, 5), adam)
    assert fast["speedup"] == pytest.approx(1.2) and fast["reference_steps"] == 6
    slow = metrics.speedup(linear_curves(10, 8, 5), adam)
    assert slow["speedup"] == pytest.approx(2 / 5)
    beyond = metrics.speedup(linear_curves(10, -1, 5), adam)
    assert beyond["speedup"] is None and beyond["at_least"] == pytest.approx(2.0)
    broken = linear_curves(10, 4, 5)
    broken[3:, 0] = np.nan
    assert metrics.speedup(broken, adam)["speedup"] is None


def test_state_bytes_per_parameter():
    params = {"w": jnp.zeros((3, 4)), "b": jnp.zeros(4)}
    # Adam: two float32 moments per parameter and one int32 step count.
    assert metrics.state_bytes_per_parameter(rules.adam(), {}, params) == pytest.approx(
        (2 * 16 * 4 + 4) / 16)
    rule = rules.l2l_lstm(hidden=20, layers=2)
    theta = rule.init_meta(__import__("jax").random.PRNGKey(0))
    # h and c: 2 layers × 20 units each, float32, per coordinate.
    assert metrics.state_bytes_per_parameter(rule, theta, params) == pytest.approx(2 * 2 * 20 * 4)
