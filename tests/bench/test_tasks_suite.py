"""The task benchmark's code path on two cheap tasks (the full suite is `lopt bench tasks`)."""
import json

import pytest

from lopt.bench import tasks as bench


def test_task_benchmark_writes_a_consistent_table(tmp_path):
    text = bench.run(str(tmp_path), quick=True, command="test", progress=False)
    result = json.load(open(tmp_path / "results.json"))
    rows = {r["task"]: r for r in result["tasks"]}
    assert set(rows) == {"quadratic", "iris_logistic"}
    assert "test_accuracy" in rows["iris_logistic"] and "test_accuracy" not in rows["quadratic"]
    for r in rows.values():
        assert r["init_loss"] > r["adam_best_loss"] and r["adam_lr"] in bench_grid()
        assert f"| {r['task']} | {r['params']} |" in text
    assert (tmp_path / "normalized.png").stat().st_size > 0
    # raw_final inverts the normalization.
    row = {"adam_best_loss": 1.0, "init_loss": 5.0, "eval_normalized_final": 0.25}
    assert bench.raw_final(row) == pytest.approx(2.0)


def bench_grid():
    from lopt.evaluation.protocol import NORMALIZATION_GRID
    return NORMALIZATION_GRID
