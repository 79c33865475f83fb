"""The benchmark metrics on constructed curves with known answers."""
import jax.numpy as jnp
import numpy as np
import pytest

from lopt import rules
from lopt.evaluation import metrics


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


def test_suite_summary_auc_is_the_mean_auc_of_the_runs_that_did_not_diverge():
    from lopt.bench.suite import mean_auc, summarize
    from lopt.evaluation import Result

    curves = linear_curves(10, 0, 10, runs=4)
    curves[:, 3] *= 7.0
    curves[6:, 3] = np.nan  # diverged: left out, as in every other statistic
    summary = summarize(Result("r", curves))
    assert summary["diverged"] == 1 and summary["final"][3] is None
    # Runs 0-2 have areas 4.5 ∓ their offsets (−0.5, −1/6, 1/6) → mean 4.5 − 1/6.
    assert mean_auc(summary) == pytest.approx(np.mean(metrics.area_under_curve(curves)[:3]))
    assert mean_auc(summary) == pytest.approx(4.5 - 1 / 6)
    assert mean_auc({"mean_curve": None}) is None


def test_speedup_over_a_reference():
    """Adam's mean curve is 10 − t over 10 steps; a rule at 4 after 5 steps saves Adam's 6
    steps in 5: speedup 1.2. A rule at −1 Adam never reaches: at least 10/5 = 2."""
    adam = linear_curves(10, 0, 10)
    assert metrics.steps_to_reach(adam.mean(axis=1), 4.0) == 6
    fast = metrics.speedup_of_curves(linear_curves(10, 4, 5), adam)
    assert fast == {"value": pytest.approx(1.2), "bound": False, "reference_steps": 6, "note": ""}
    slow = metrics.speedup_of_curves(linear_curves(10, 8, 5), adam)
    assert slow["value"] == pytest.approx(2 / 5) and not slow["bound"]
    beyond = metrics.speedup_of_curves(linear_curves(10, -1, 5), adam)
    assert beyond["bound"] and beyond["value"] == pytest.approx(2.0)
    assert metrics.format_speedup(beyond) == "≥ 2" and metrics.format_speedup(fast) == "1.2"
    # A diverged run of the rule earns it nothing.
    broken = linear_curves(10, 4, 5)
    broken[3:, 0] = np.nan
    lost = metrics.speedup_of_curves(broken, adam)
    assert lost["value"] == 0.0 and lost["note"] == "diverged"
    assert metrics.format_speedup(lost) == "0 (diverged)"


def test_speedup_from_mean_curves_and_a_diverged_reference():
    """The same definition on mean curves: the reference's surviving runs count where they
    reach the target; where none is left it is a bound, flagged."""
    learned = [1.0, 0.5, 0.3, 0.2, 0.1]  # T = 4, final 0.1
    adam = [1.0, 0.9, 0.6, 0.4, 0.3, 0.2, 0.1, 0.05, 0.0]
    assert metrics.speedup(learned, adam)["value"] == 6 / 4
    assert metrics.speedup(learned, [1.0] * 9) == {"value": 2.0, "bound": True,
                                                    "reference_steps": None, "note": ""}
    assert metrics.speedup(learned, [1.0, 0.1] + [0.0] * 7)["value"] == 1 / 4
    assert metrics.speedup(learned, adam, reference_diverged=3)["value"] == 6 / 4
    assert metrics.speedup(None, adam, diverged=2)["value"] == 0.0
    gone = metrics.speedup(learned, [np.nan] * 9, reference_diverged=16)
    assert gone == {"value": 2.0, "bound": True, "reference_steps": None,
                    "note": "reference diverged"}


def test_state_bytes_per_parameter():
    params = {"w": jnp.zeros((3, 4)), "b": jnp.zeros(4)}
    # Adam: two float32 moments per parameter and one int32 step count.
    assert metrics.state_bytes_per_parameter(rules.adam(), {}, params) == pytest.approx(
        (2 * 16 * 4 + 4) / 16)
    rule = rules.l2l_lstm(hidden=20, layers=2)
    theta = rule.init_meta(__import__("jax").random.PRNGKey(0))
    # h and c: 2 layers × 20 units each, float32, per coordinate.
    assert metrics.state_bytes_per_parameter(rule, theta, params) == pytest.approx(2 * 2 * 20 * 4)


def test_iqm_is_the_mean_of_the_middle_half_of_all_runs():
    from lopt.evaluation import stats

    # 2 tasks x 8 runs = 16 scores 0..15: the middle half is 4..11, mean 7.5.
    scores = np.arange(16.0).reshape(8, 2)
    assert stats.iqm(scores) == pytest.approx(7.5)
    # Diverged runs (+inf) among the worst quarter are trimmed; beyond a quarter IQM is inf.
    trimmed = scores.copy()
    trimmed[-2:, :] = np.inf  # the 4 largest become inf: still the top quarter
    assert stats.iqm(trimmed) == pytest.approx(7.5)
    trimmed[-3:, :] = np.inf
    assert stats.iqm(trimmed) == np.inf


def test_stratified_bootstrap_interval_brackets_the_iqm_and_shrinks_with_runs():
    from lopt.evaluation import stats

    rng = np.random.default_rng(0)
    few = rng.normal(size=(8, 3)) + np.array([0.0, 1.0, 2.0])
    many = rng.normal(size=(128, 3)) + np.array([0.0, 1.0, 2.0])
    est = stats.iqm_with_ci({"few": few, "many": many}, reps=500)
    for name, scores in (("few", few), ("many", many)):
        e = est[name]
        assert e["iqm"] == pytest.approx(stats.iqm(scores))
        assert e["low"] < e["iqm"] < e["high"]
    assert est["many"]["high"] - est["many"]["low"] < 0.5 * (est["few"]["high"] - est["few"]["low"])
    # Stratified: every resample keeps each task's runs, so a task whose runs are all equal
    # contributes a constant and two such tasks give a zero-width interval.
    flat = stats.iqm_with_ci({"flat": np.tile([1.0, 3.0], (6, 1))}, reps=200)["flat"]
    assert flat["low"] == flat["high"] == pytest.approx(2.0)


def test_performance_profile_counts_runs_at_or_below_tau():
    from lopt.evaluation import stats

    scores = np.array([[0.1, 0.5], [0.2, np.inf], [0.9, 0.3], [0.4, 0.6]])
    taus = [0.0, 0.25, 0.5, 1.0, 10.0]
    got = stats.performance_profile({"r": scores}, taus, reps=50)["r"]
    finite = scores[np.isfinite(scores)]
    expected = [np.sum(finite <= t) / scores.size for t in taus]
    # rliable counts strict inequalities on the negated losses: a loss equal to τ counts.
    np.testing.assert_allclose(got["fraction"], expected)
    assert all(lo <= f + 1e-12 and f <= hi + 1e-12
               for lo, f, hi in zip(got["low"], got["fraction"], got["high"]))


def test_scores_matrix_marks_diverged_runs_and_needs_equal_runs():
    from lopt.evaluation import stats

    m = stats.scores_matrix([[0.1, np.nan], [0.2, 0.3]])
    assert m.shape == (2, 2) and m[1, 0] == np.inf and m[0, 1] == 0.2
    with pytest.raises(ValueError, match="same number of runs"):
        stats.scores_matrix([[0.1], [0.2, 0.3]])


def test_normalized_loss_maps_initial_to_one_and_adams_best_to_zero():
    from lopt.tasks.normalize import AdamReference

    ref = AdamReference("f", init_loss=5.0, best_loss=1.0, learning_rate=0.1, num_steps=10,
                        num_tasks=2, seed=0, grid=(0.1,))
    np.testing.assert_allclose(np.asarray(ref.normalize(jnp.array([5.0, 1.0, 3.0, 0.0]))),
                               [1.0, 0.0, 0.5, -0.25])
