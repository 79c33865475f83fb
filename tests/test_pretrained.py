"""The shipped L2L LSTM does what the committed benchmark says, on quadratics it never saw."""
import json
import pathlib

import jax

import lopt
from lopt.evaluation import compare
from lopt.pretrained import path
from lopt.rules import adam, nesterov, rmsprop, sgd
from lopt.tasks import quadratic_family

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_pretrained_l2l_beats_every_tuned_baseline_on_fresh_quadratics():
    rule, theta = lopt.load(path("l2l_lstm_quadratic"))
    results = compare({"l2l": (rule, theta)},
                      {"sgd": sgd, "nesterov": nesterov, "rmsprop": rmsprop, "adam": adam},
                      quadratic_family(), jax.random.PRNGKey(2026), num_tasks=64, num_steps=100)
    learned, *baselines = [r.summary() for r in results]
    for b in baselines:
        assert not b["lr_at_grid_edge"], b["name"]
        assert learned["final_mean"] < b["final_mean"], (b["name"], b["final_mean"])


def test_committed_benchmark_is_the_shipped_optimizer():
    committed = (ROOT / "benchmarks" / "l2l_quadratic" / "l2l_lstm.lopt").read_bytes()
    assert pathlib.Path(path("l2l_lstm_quadratic")).read_bytes() == committed
    table = json.loads((ROOT / "benchmarks" / "l2l_quadratic" / "comparison.json").read_text())
    learned = [r for r in table["results"] if r["learning_rate"] is None]
    assert len(learned) == 1 and len(table["results"]) == 5
