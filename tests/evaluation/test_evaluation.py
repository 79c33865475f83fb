"""Evaluation: curves, divergence, learning-rate tuning and ranking against plain-numpy runs.

The family: 1-D quadratics f(x) = a/2 (x − 1)² from x₀ = 0 with curvature a ∈ {0.5, 3}, whose
loss is NaN outside |x − 1| ≤ 4 (a planted divergence). SGD with learning rate η multiplies the
error by (1 − ηa) every step, so η = 0.75 diverges on the a = 3 instances (|1 − 2.25| > 1) and
converges fastest on the others: over its finite runs it looks best, and it must not win.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lopt import rules
from lopt.evaluation import (
    Instances,
    Result,
    compare,
    diverged,
    evaluate_rule,
    loss_curves,
    rank_key,
    score,
    tables,
    tune_learning_rate,
)
from lopt.files.atomic import write_json
from lopt.outer.unroll import Horizon, init_inner_batch
from lopt.tasks import Task, TaskFamily

STEPS, TASKS = 20, 8
KEY = jax.random.PRNGKey(3)
GRID = (0.01, 0.3, 0.6, 0.75)


def capped_family():
    def sample(key):
        return {"a": jnp.where(jax.random.bernoulli(key, 0.5), 3.0, 0.5)}

    def build(cfg):
        def loss(params, key):
            err = params["x"] - 1.0
            return jnp.where(jnp.abs(err) > 4.0, jnp.nan, 0.5 * cfg["a"] * err**2)

        return Task(init=lambda key: {"x": jnp.zeros(())}, loss=loss)

    return TaskFamily(sample=sample, build=build, name="capped_quadratic")


FAMILY = capped_family()


def curvatures(key=KEY, tasks=TASKS):
    batch = init_inner_batch(rules.sgd(0.1), FAMILY, {}, key, tasks, Horizon(STEPS + 1),
                             stagger=False)
    return np.asarray(batch.cfg["a"], np.float64)


def numpy_curves(lr, key=KEY, tasks=TASKS):
    """SGD written out in numpy; NaN from the first step outside the cap on."""
    a = curvatures(key, tasks)
    x, rows = np.zeros_like(a), []
    for _ in range(STEPS + 1):
        err = x - 1.0
        rows.append(np.where(np.abs(err) > 4.0, np.nan, 0.5 * a * err**2))
        x = x - lr * a * err
    curves = np.array(rows)
    return np.where(np.cumsum(np.isnan(curves), axis=0) > 0, np.nan, curves)


def test_the_instances_mix_both_curvatures():
    a = curvatures()
    assert 0 < (a == 3.0).sum() < TASKS


@pytest.mark.parametrize("lr", GRID)
def test_curves_match_numpy_and_a_diverged_run_stays_diverged(lr):
    got = np.asarray(jax.jit(lambda: loss_curves(rules.sgd(lr), {}, FAMILY, KEY, num_tasks=TASKS,
                                                 num_steps=STEPS))())
    expected = numpy_curves(lr)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-9)  # NaN where NaN
    np.testing.assert_array_equal(diverged(got), curvatures() * lr > 2.0)


def test_a_diverged_run_is_not_scored_on_a_fresh_instance():
    """The run that leaves the cap at step t stays NaN to the end (it is not reset)."""
    got = np.asarray(loss_curves(rules.sgd(0.75), {}, FAMILY, KEY, num_tasks=TASKS,
                                 num_steps=STEPS))
    bad = curvatures() == 3.0
    assert np.all(np.isnan(got[-1, bad])) and np.all(np.isfinite(got[:, ~bad]))


def test_score_counts_divergence_before_loss():
    curves = {lr: numpy_curves(lr) for lr in GRID}
    ok = ~np.isnan(curves[0.75][-1])
    # Over its finite runs alone η = 0.75 looks best; a mean ignoring divergence would pick it.
    assert np.mean(curves[0.75][-1][ok]) < np.mean(curves[0.6][-1])
    assert score(curves[0.75]) == (int((~ok).sum()), pytest.approx(np.mean(curves[0.75][-1][ok])))
    assert score(curves[0.6])[0] == 0
    assert score(curves[0.6]) < score(curves[0.75])


def test_tune_learning_rate_picks_the_best_lr_without_divergence():
    result = tune_learning_rate(rules.sgd, FAMILY, KEY, num_tasks=TASKS, num_steps=STEPS,
                                grid=GRID)
    expected = best_lr(GRID)
    assert result.learning_rate == expected and expected != 0.75
    assert not result.lr_at_grid_edge
    np.testing.assert_allclose(result.curves, numpy_curves(expected), rtol=1e-5, atol=1e-9)
    low = tune_learning_rate(rules.sgd, FAMILY, KEY, num_tasks=TASKS, num_steps=STEPS,
                             grid=GRID[:2])
    assert low.learning_rate == best_lr(GRID[:2]) == 0.3 and low.lr_at_grid_edge


def best_lr(grid, key=KEY, tasks=TASKS):
    """The lr with the lowest mean final loss among those where no run diverged, in numpy."""
    finals = {lr: np.mean(numpy_curves(lr, key, tasks)[-1]) for lr in grid}  # NaN: diverged
    return min((lr for lr in grid if np.isfinite(finals[lr])), key=finals.get)


def test_compare_ranks_a_diverging_rule_last_and_counts_it():
    """A 'learned' rule (SGD at 0.75) that diverges on some instances but beats everything on
    the rest is ranked below the tuned baseline and below a slow rule that never diverges."""
    results = compare({"fast_but_diverges": (rules.sgd(0.75), {}),
                       "slow": (rules.sgd(0.01), {})},
                      {"sgd": rules.sgd}, FAMILY, Instances(KEY, TASKS), num_steps=STEPS,
                      grid=GRID)
    summaries = {r.name: r.summary() for r in results}
    np.testing.assert_allclose(results[0].curves, numpy_curves(0.75), rtol=1e-5, atol=1e-9)
    assert summaries["sgd"]["learning_rate"] == best_lr(GRID)
    bad = int((curvatures() == 3.0).sum())
    fast = summaries["fast_but_diverges"]
    assert fast["diverged"] == bad and fast["num_tasks"] == TASKS
    assert fast["final_mean"] < summaries["slow"]["final_mean"]
    order = [s["name"] for s in sorted(summaries.values(), key=rank_key)]
    assert order == ["sgd", "slow", "fast_but_diverges"]

    table = tables.comparison_table(list(summaries.values()), TASKS, STEPS)
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert [r.split("|")[1].strip() for r in rows[1:]] == order
    assert f"| {bad}/{TASKS} |" in rows[3] and "| 0/8 |" in rows[1]
    assert rows[3].rstrip().endswith("| — |")  # no "/ best" ratio for a row with divergence


def test_summary_of_an_all_diverged_rule_is_strict_json():
    import json

    curves = numpy_curves(5.0)  # diverges everywhere
    summary = Result("boom", curves, learning_rate=5.0).summary()
    assert summary["diverged"] == TASKS and summary["final_mean"] is None
    assert summary["mean_curve"] is None
    json.loads(json.dumps(summary, allow_nan=False))
    assert rank_key(summary) == (TASKS, float("inf"))


def test_evaluate_rule_uses_the_same_instances_for_every_rule():
    a = evaluate_rule(rules.sgd(0.3), {}, FAMILY, KEY, num_tasks=TASKS, num_steps=STEPS)
    b = evaluate_rule(rules.sgd(0.01), {}, FAMILY, KEY, num_tasks=TASKS, num_steps=STEPS)
    np.testing.assert_array_equal(a.curves[0], b.curves[0])
    np.testing.assert_allclose(a.curves, numpy_curves(0.3), rtol=1e-5, atol=1e-9)


TUNE_KEY, TUNE_TASKS = jax.random.PRNGKey(77), 12


def test_compare_tunes_baselines_on_separate_instances_and_reports_on_the_evaluation_ones():
    grid = (0.01, 0.1, 0.3, 0.6)
    results = compare({}, {"sgd": rules.sgd}, FAMILY, Instances(KEY, TASKS), num_steps=STEPS,
                      grid=grid, tuning=Instances(TUNE_KEY, TUNE_TASKS))
    (sgd,) = results
    lr = best_lr(grid, TUNE_KEY, TUNE_TASKS)
    assert sgd.learning_rate == lr
    np.testing.assert_allclose(sgd.curves, numpy_curves(lr), rtol=1e-5, atol=1e-9)
    table = tables.comparison_table([sgd.summary()], TASKS, STEPS, TUNE_TASKS)
    assert f"on {TUNE_TASKS} separate tuning instances" in table


def test_tuning_and_evaluation_instances_never_overlap():
    from lopt.tasks import quadratic_family

    family = quadratic_family(dim=4)

    def instances(key, n):
        batch = init_inner_batch(rules.sgd(0.1), family, {}, key, n, Horizon(2), stagger=False)
        return np.asarray(jax.tree.leaves(batch.cfg)[0]).reshape(n, -1)

    tune, evaluation = instances(TUNE_KEY, 64), instances(KEY, 256)
    shared = {tuple(np.round(r, 6)) for r in tune} & {tuple(np.round(r, 6)) for r in evaluation}
    assert not shared


def test_a_nan_mean_ranks_last_and_is_written_as_null(tmp_path):
    """A summary whose mean is NaN (a record read back from a report, or a rule that returns
    NaN without a non-finite loss) ranks below every number, takes no "/ best" ratio, does not
    become the best, and comparison JSON stays strict."""
    import json

    def row(name, mean):
        return {"name": name, "learning_rate": None, "diverged": 0, "num_tasks": 4,
                "final_mean": mean, "final_sem": None, "final_median": mean,
                "mean_curve": [1.0, mean]}

    rows = [row("nan_rule", float("nan")), row("a", 0.5), row("b", 0.25)]
    assert [r["name"] for r in sorted(rows, key=rank_key)] == ["b", "a", "nan_rule"]
    table = tables.comparison_table(rows, 4, 1)
    lines = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert [line.split("|")[1].strip() for line in lines[1:]] == ["b", "a", "nan_rule"]
    assert lines[1].rstrip().endswith("| 1.00 |") and lines[2].rstrip().endswith("| 2.00 |")
    assert lines[3].rstrip().endswith("| — |")
    write_json(str(tmp_path / "c.json"), {"results": rows, "inf": float("inf")})
    text = (tmp_path / "c.json").read_text()
    loaded = json.loads(text, parse_constant=lambda c: pytest.fail(f"bare {c} in JSON"))
    assert loaded["results"][0]["final_mean"] is None and loaded["inf"] is None
