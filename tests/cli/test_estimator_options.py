"""Estimators declare their own options: ``lopt train --estimator X`` needs nothing in
``lopt.cli`` beyond what X declares, and the estimator's checks are the only range checks."""
import dataclasses
import json
import os
import subprocess
import sys

import pytest

from lopt.cli.config import EstimatorConfig, estimator_options
from lopt.outer import ESTIMATORS
from lopt.outer.base import options_of

HERE = os.path.dirname(os.path.abspath(__file__))
TINY = ["train", "--steps", "2", "--num-runs", "2", "--truncation", "2", "--horizon", "4",
        "--eval-tasks", "2", "--eval-steps", "3", "--tune-tasks", "1", "--baselines", "sgd",
        "--no-progress", "--rule-config", '{"hidden": 4, "layers": 1}']


def _throwaway(*args):
    return subprocess.run([sys.executable, os.path.join(HERE, "throwaway_estimator.py"), *args],
                          capture_output=True, text=True, timeout=600)


def test_a_new_estimator_runs_through_the_cli_with_its_own_option(tmp_path):
    out = tmp_path / "run"
    done = _throwaway(*TINY, "--estimator", "scaled_tbptt", "--scale", "0.5", "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    config = json.loads((out / "config.json").read_text())
    assert config["estimator"] == "scaled_tbptt" and config["scale"] == 0.5
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [0, 1]
    assert (out / "l2l_lstm.lopt").exists()


@pytest.mark.parametrize("flags,says", [
    (["--estimator", "scaled_tbptt", "--scale", "-1"], "scale must be a number in (0, 10]"),
    (["--estimator", "tbptt", "--scale", "0.5"],
     "scale applies to estimator scaled_tbptt only; got estimator 'tbptt'"),
])
def test_its_option_is_checked_by_the_estimator_in_one_line(tmp_path, flags, says):
    done = _throwaway(*TINY, *flags, "--out", str(tmp_path / "run"))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and says in done.stderr, done.stderr
    assert not (tmp_path / "run").exists()


def test_the_cli_group_is_exactly_the_registered_estimators_options():
    names = [f.name for f in dataclasses.fields(EstimatorConfig)]
    assert names == ["estimator"] + list(estimator_options())
    declared = set().union(*(options_of(cls) for cls, _ in ESTIMATORS.values()))
    assert set(names) - {"estimator"} == declared


def test_an_option_keeps_the_library_default_unless_the_cli_says_otherwise():
    cfg = EstimatorConfig()
    for name, f in estimator_options().items():
        assert getattr(cfg, name) == (128 if name == "num_runs" else f.default), name
