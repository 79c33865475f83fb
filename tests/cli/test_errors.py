"""Errors are reported by origin: bad input is one line and exit 2 whatever its type; an
exception lopt did not expect, once work has started, is one line naming the phase and the
file holding its traceback, exit 1 — even when it is a ValueError."""
import re

import pytest

from lopt.cli import main
from lopt.cli import training as training_cli

TINY = ["train", "--steps", "2", "--num-runs", "2", "--truncation", "2", "--horizon", "4",
        "--eval-tasks", "2", "--eval-steps", "3", "--tune-tasks", "1", "--baselines", "sgd",
        "--no-progress"]


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    return err


@pytest.mark.parametrize("error", [ValueError("a library bug"), KeyError("lost"),
                                   ZeroDivisionError("float division by zero")])
def test_an_unexpected_exception_mid_run_names_the_phase_and_its_traceback_file(
        tmp_path, capsys, monkeypatch, error):
    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(training_cli, "train", broken)
    assert main(TINY + ["--out", str(tmp_path / "run")]) == 1
    err = _one_line(capsys)
    assert err.startswith("lopt train: internal error during meta-training: "
                          f"{type(error).__name__}: ")
    path = re.search(r"full traceback: (\S+);", err).group(1)
    text = open(path).read()
    assert "Traceback (most recent call last)" in text and "in broken" in text
    assert str(error.args[0]) in text and "during meta-training" in text


def test_a_failure_in_the_comparison_is_named_as_the_comparison(tmp_path, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("shapes do not match")

    monkeypatch.setattr(training_cli, "run_comparison", broken)
    assert main(TINY + ["--out", str(tmp_path / "run")]) == 1
    assert "internal error during the comparison: ValueError: shapes do not match" in \
        _one_line(capsys)
    assert (tmp_path / "run" / "l2l_lstm.lopt").exists()  # meta-training's result was kept


@pytest.mark.parametrize("flags,says", [
    (["--init-from", "no_such_optimizer"], "init_from must be a shipped optimizer"),
    (["--num-runs", "0"], "num_runs"),
    (["--task", "no_such_task"], "no_such_task"),
])
def test_bad_input_is_a_usage_error_before_any_work(tmp_path, capsys, flags, says):
    out = tmp_path / "run"
    assert main(TINY + flags + ["--out", str(out)]) == 2
    err = _one_line(capsys)
    assert err.startswith("lopt train: error: ") and says in err
    assert not out.exists()


def test_a_library_value_error_while_checking_settings_is_a_usage_error(tmp_path, capsys,
                                                                          monkeypatch):
    """A ValueError raised by a library check during the settings' checks (before any work)
    is about the input: exit 2, not an internal error."""
    def refuse(*args, **kwargs):
        raise ValueError("estimate refused: this family cannot be sized")

    monkeypatch.setattr(training_cli.preflight, "check_memory", refuse)
    assert main(TINY + ["--out", str(tmp_path / "run")]) == 2
    assert "lopt train: error: estimate refused" in _one_line(capsys)
