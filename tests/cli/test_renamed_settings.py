"""Issue 38's renames keep every old spelling working until its removal release, and never
refuse a resume: ``num_tasks`` (an estimator's concurrent inner runs) is ``num_runs``."""
import warnings

import pytest

from lopt.cli.config import TrainConfig
from lopt.cli.parser import build_parser, train_config
from lopt.files.run_folder import ResumeMismatch, check_resume
from lopt.outer import PES, TBPTT
from lopt.outer.unroll import UnrollOptions


def test_the_old_option_name_builds_the_same_options_with_a_deprecation_warning():
    with pytest.warns(DeprecationWarning, match="num_tasks is now called num_runs.*0.4"):
        old = UnrollOptions(num_tasks=3, truncation=4)
    assert old == UnrollOptions(num_runs=3, truncation=4)
    with pytest.warns(DeprecationWarning):
        assert TBPTT(num_tasks=3) == TBPTT(num_runs=3)
    with pytest.warns(DeprecationWarning):
        assert PES(num_runs=2).num_tasks == 2  # read through the held options
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the new names warn about nothing
        assert PES(num_runs=2, sigma=0.1).num_runs == 2


def test_the_old_flag_is_the_new_one():
    def parsed(*flags):
        return train_config(build_parser().parse_args(["train", *flags])).outer.num_runs

    assert parsed("--num-tasks", "12") == parsed("--num-runs", "12") == 12


def test_stored_configs_and_checkpoints_with_the_old_key_still_resume():
    """A config.json, recipe or checkpoint written before the rename says num_tasks: it reads
    as num_runs, and a checkpoint's stored run settings compare equal."""
    cfg = TrainConfig.from_flat(num_tasks=12, truncation=4)
    assert cfg.outer.num_runs == 12 and "num_tasks" not in cfg.flat()
    meta = {"rule": "lstm", "config": {}, "step": 3, "run": {"num_tasks": 12, "truncation": 4}}
    check_resume("ckpt", meta, rule_name="lstm", rule_config={}, num_steps=5,
                 run_config={"num_runs": 12, "truncation": 4})
    with pytest.raises(ResumeMismatch, match="num_runs"):
        check_resume("ckpt", meta, rule_name="lstm", rule_config={}, num_steps=5,
                     run_config={"num_runs": 8, "truncation": 4})
