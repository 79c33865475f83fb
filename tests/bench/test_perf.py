"""lopt bench perf's static costs and ratios against hand computations."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lopt.bench.perf import report
from lopt.bench.perf.costs import flops_per_coordinate
from lopt.evaluation.metrics import state_bytes_per_parameter
from lopt.rules import adam, hierarchical, l2l_lstm


def test_flops_count_every_per_coordinate_matrix_once():
    theta = l2l_lstm().init_meta(jax.random.PRNGKey(0))
    # 2x20 LSTM on 2 inputs: [2+20, 80] and [20+20, 80] gate matrices, a [20, 1] read-out.
    assert flops_per_coordinate(theta) == 2 * (22 * 80 + 40 * 80 + 20 * 1)
    theta = hierarchical().init_meta(jax.random.PRNGKey(0))
    # The per-tensor LSTM and its context map run once per tensor: not counted.
    assert flops_per_coordinate(theta) == 2 * ((11 + 9 + 8) * 32 + 32 * 2)


def test_state_bytes_match_optax_adams_own_state():
    params = {"w": jnp.zeros((10, 10)), "b": jnp.zeros(5)}
    state = optax.adam(1e-3).init(params)
    want = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state)) / 105
    assert state_bytes_per_parameter(adam(1e-3), None, params) == want


def test_update_ratios_are_formed_within_each_process():
    def process(adam_s, rule_s, gflops):
        return [{"kind": "matmul", "gflops": gflops},
                {"kind": "update", "rule": "optax.adam", "seconds": adam_s},
                {"kind": "update", "rule": "r", "seconds": rule_s}]

    updates = {"head": process(0.001, 0.010, 100.0), "head_again": process(0.002, 0.030, 50.0),
               "baseline": process(0.001, 0.080, 100.0)}
    (row,) = report._update_rows(updates, {"r": 1000}, num_params=10**6)
    assert np.isclose(row["x_adam"], (10 + 15) / 2)
    # floor: 1000 FLOPs x 1e6 coordinates at 100 and at 50 GFLOP/s = 10 ms and 20 ms.
    assert np.isclose(row["x_floor"], (0.010 / 0.010 + 0.030 / 0.020) / 2)
    assert np.isclose(row["speedup"], 80 / 20)


def test_throughput_in_turns_reports_medians_ranges_and_the_median_of_round_ratios():
    from lopt.bench.perf import throughput as turns

    def round_(quad, mlp):
        return [{"family": "sum_of_squares", "inner_steps_per_s": quad},
                {"family": "teacher_mlp", "inner_steps_per_s": mlp}]

    data = {"head": [round_(10, 1), round_(30, 3), round_(20, 2)],
            "baseline": [round_(5, 2), round_(30, 1), round_(10, 2)]}
    quad, mlp = turns.summary(data)
    assert quad["head_median"] == 20 and quad["head_range"] == [10, 30]
    assert quad["baseline_median"] == 10 and quad["baseline_range"] == [5, 30]
    assert quad["ratio_median"] == 2.0  # rounds: 2, 1, 2
    assert mlp["ratio_median"] == 1.0  # rounds: 0.5, 3, 1


def test_regression_judges_updates_within_each_process_and_throughput_over_rounds():
    from lopt.bench.perf import regression

    def process(adam_s, rule_s, pes_rate, gone=False):
        out = [{"kind": "matmul", "gflops": 100.0},
               {"kind": "update", "rule": "optax.adam", "seconds": adam_s},
               {"kind": "update", "rule": "r", "seconds": rule_s},
               {"kind": "throughput", "estimator": "pes", "rule": "r", "family": "f",
                "inner_steps_per_s": pes_rate}]
        if not gone:
            out.append({"kind": "update", "rule": "new", "seconds": rule_s})
        return out

    # The head's processes ran at half speed: raw update ratios say 0.5x, but relative to
    # optax.adam in the same process the rule is exactly as fast; PES lost 20% over rounds.
    turns = {"head": [process(0.002, 0.020, 80.0), process(0.004, 0.040, 40.0),
                      process(0.002, 0.020, 80.0)],
             "baseline": [process(0.001, 0.010, 100.0, gone=True),
                          process(0.002, 0.020, 50.0, gone=True),
                          process(0.001, 0.010, 100.0, gone=True)]}
    rows = {r["figure"]: r for r in regression.summary(turns)}
    assert "update new" not in rows  # the baseline commit lacks it: nothing to compare
    rule = rows["update r"]
    assert np.isclose(rule["ratio_median"], 0.5) and np.isclose(rule["relative_median"], 1.0)
    assert rule["verdict"] == "same"
    pes = rows["pes r f"]
    assert np.isclose(pes["ratio_median"], 0.8) and pes["ratio_range"] == [0.8, 0.8]
    assert pes["verdict"] == "slower" and "relative_median" not in pes
    assert rows["update optax.adam"]["verdict"] == "reference"  # optax's: the noise, not judged
    assert "**slower**" in regression.table(list(rows.values()), "abc1234")
    # The full job list holds every figure perf and throughput commit to.
    names = {j.get("estimator", j["kind"]) + " " + j.get("family", "")
             for j in regression.jobs(regression.FULL)}
    assert {"pes teacher_mlp", "outer teacher_mlp", "outer sum_of_squares",
            "tbptt quadratic"} <= names


def test_regression_measures_again_what_the_screen_found_slower():
    from lopt.bench.perf import regression

    size = regression.FULL
    jobs = regression.confirm_jobs(size, ["update multiscale_adam", "pes per_parameter_mlp "
                                          "teacher_mlp", "outer step per_parameter_mlp "
                                          "sum_of_squares"])
    updates, *rest = jobs
    assert updates["rules"] == ["optax.adam", "multiscale_adam"]
    assert updates["repeats"] == size.confirm_repeats
    assert sorted(regression.figure_name(j) for j in rest) == [
        "outer step per_parameter_mlp sum_of_squares", "pes per_parameter_mlp teacher_mlp"]
    assert all(j["repeats"] == size.confirm_repeats for j in rest)
    assert regression.confirm_jobs(size, []) == []
    screen = [{"figure": "update a", "verdict": "slower"}, {"figure": "update b",
                                                            "verdict": "same"}]
    merged = regression.merge(screen, [{"figure": "update a", "verdict": "same"},
                                       {"figure": "update b", "verdict": "slower"},
                                       {"figure": "update optax.adam", "verdict": "reference"}],
                              ["update a"])
    assert merged == [{"figure": "update a", "verdict": "same", "confirmed": True},
                      {"figure": "update b", "verdict": "same"}]


def test_regression_run_screens_measures_again_what_was_not_faster_and_reports_it(
        tmp_path, monkeypatch):
    from lopt.bench.perf import regression

    calls = []

    def process(rule_s, pes_rate):
        return [{"kind": "matmul", "gflops": 100.0},
                {"kind": "update", "rule": "optax.adam", "seconds": 0.001},
                {"kind": "update", "rule": "fast", "seconds": 0.001},
                {"kind": "update", "rule": "r", "seconds": rule_s},
                {"kind": "throughput", "estimator": "pes", "rule": "per_parameter_mlp",
                 "family": "teacher_mlp", "inner_steps_per_s": pes_rate}]

    def fake_alternate(jobs, rounds, commit, suite):
        calls.append((jobs, rounds, commit))
        if len(calls) == 1:  # the screen: r looks 10% slower, PES unchanged, "fast" 2x faster
            head, base = process(0.011, 100.0), process(0.010, 100.0)
            base[2]["seconds"] = 0.002
        else:  # measured again: r is as fast as before; PES really 20% slower
            head, base = process(0.010, 80.0), process(0.010, 100.0)
        return {"head": [head] * rounds, "baseline": [base] * rounds}

    monkeypatch.setattr(regression.throughput, "alternate", fake_alternate)
    md = regression.run(str(tmp_path), quick=True, progress=False)
    size = regression.QUICK
    (screen_jobs, rounds, commit), (again_jobs, again_rounds, _) = calls
    assert screen_jobs == regression.jobs(size) and rounds == size.rounds
    assert commit == regression.BASELINE_COMMIT and again_rounds == size.confirm_rounds
    # Measured again: every figure the screen did not find faster, nothing else.
    assert again_jobs[0]["rules"] == ["optax.adam", "r"]
    assert [regression.figure_name(j) for j in again_jobs[1:]] == [
        "pes per_parameter_mlp teacher_mlp"]
    rows = {line.split(" | ")[0].strip("| "): line for line in md.splitlines()
            if line.startswith("| update") or line.startswith("| pes")}
    assert rows["update r"].endswith("| same (measured again) |")
    assert rows["pes per_parameter_mlp teacher_mlp"].endswith("| **slower** (measured again) |")
    assert rows["update fast"].endswith("| faster |")
    assert "Slower by more than 5%: pes per_parameter_mlp teacher_mlp." in md
    assert (tmp_path / "ratios.png").exists() and (tmp_path / "results.json").exists()
    # A second run reads both stages back and measures nothing.
    calls.clear()
    assert regression.run(str(tmp_path), quick=True, progress=False) and calls == []


def test_cores_summarizes_each_setting_over_its_processes():
    from lopt.bench.perf import cores as suite

    def process(pes_s, update_s):
        return [{"kind": "throughput", "rule": "r", "family": "f", "seconds_per_outer_step": pes_s},
                {"kind": "update", "rule": "r", "seconds": update_s}]

    measured = {suite.SETTINGS[0]: [process(0.01, 0.03)],
                suite.SETTINGS[2]: [process(0.02, 0.01), process(0.04, 0.03),
                                    process(0.03, 0.05)]}
    rows = suite.summary(measured)
    assert rows["PES r f"][suite.SETTINGS[0]] == [10.0, 10.0, 10.0]
    assert np.allclose(rows["PES r f"][suite.SETTINGS[2]], [20.0, 30.0, 40.0])
    assert np.allclose(rows["update r"][suite.SETTINGS[2]], [10.0, 30.0, 50.0])
    names = {suite.figure(j) if j["kind"] != "updates" else "updates"
             for j in suite.jobs(suite.FULL)}
    assert names == {"PES per_parameter_mlp teacher_mlp", "PES adafac_mlp teacher_mlp",
                     "PES per_parameter_mlp sum_of_squares", "updates"}


@pytest.mark.slow  # four fresh processes importing jax: out of the default run's budget
def test_probes_run_in_fresh_processes_at_once_pinned_or_not():
    import os

    from lopt.bench.perf.overview import run_probe, run_probes_together

    jobs = [{"kind": "updates", "rules": ["optax.adam"], "width": 8, "repeats": 1}]
    (alone,) = run_probe(jobs)
    assert alone["rule"] == "optax.adam" and alone["seconds"] > 0
    cpu = min(os.sched_getaffinity(0))
    both = run_probes_together(jobs, [None, cpu])
    assert [r[0]["rule"] for r in both] == ["optax.adam", "optax.adam"]
    with pytest.raises(RuntimeError, match="probe.py failed"):
        run_probe([{"kind": "updates", "rules": ["optax.adam"], "width": -1, "repeats": 1}])
