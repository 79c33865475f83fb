import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import lopt
from lopt.cli import main
from lopt.outer import ESTIMATORS
from lopt.rules import RULES
from lopt.tasks import FAMILIES


@pytest.mark.parametrize("argv,field", [
    (["train", "--steps", "0"], "steps"),
    (["train", "--rule", "nope"], "rule"),
    (["train", "--meta-lr", "-1"], "meta_lr"),
    (["train", "--weighting", "median"], "weighting"),
    (["train", "--task", "imagenet"], "task"),
    (["train", "--task", "mixture:nope"], "mixture"),
    (["train", "--task", "mixture:quadratic+quadratic"], "twice"),
    (["train", "--task", "mlp@x"], "seed"),
    (["train", "--task", f"mlp@{2**40}"], "seed after '@' must be an integer in [0, 2**31)"),
    (["train", "--rule-config", '{"hidden": 4, "hidden": 8}'], "'hidden' is given twice"),
    (["train", "--rule-config", "[" * 5000 + "]" * 5000], "nested too deeply"),
    (["train", "--task", "densenet@1"], "sampler"),
    (["train", "--task", "digits_mlp", "--num-runs", "4", "--devices", "3"], "devices"),
    (["train", "--baselines", "sgd,velo"], "baselines"),
    (["train", "--eval-tasks", "1"], "eval_tasks"),
    (["train", "--truncation", "abc"], "--truncation"),
    (["train", "--estimator", "sgd"], "estimator"),
    (["train", "--estimator", "pes", "--sigma", "0"], "sigma"),
    (["train", "--max-horizon", "5"], "max_horizon"),
    (["train", "--truncation", "5", "--horizon", "3"],
     "truncation must be at most the longest horizon (3)"),
    (["train", "--objective", "test"], "objective"),
    (["train", "--objective", "eval"], "objective"),
    (["train", "--objective", "valid"], "objective"),
    (["train", "--loss-clip", "-1"], "loss_clip"),
    (["train", "--remat", "always"], "remat"),
    (["train", "--full-horizon", "--estimator", "pes"], "full_horizon"),
    (["train", "--devices", "3"], "devices"),
    (["train", "--model-parallel", "0"], "model_parallel"),
    (["train", "--model-parallel", "2"], "model_parallel (2) needs --devices"),
    (["train", "--devices", "1", "--model-parallel", "2"], "model_parallel (2) must divide"),
    (["train", "--process-id", "1"], "--distributed"),
    (["train", "--rule", "multiscale_adam", "--rule-config", "{kind: 1}"], "rule_config"),
    (["train", "--rule", "rnnprop", "--rule-config", '{"kind": "x"}'], "rule_config"),
    (["train", "--recipe", "velo"], "recipe"),
    (["train", "--validate-every", "-1"], "validate_every"),
    (["train", "--task", "digits_mlp", "--mup"], "mup needs μP tasks"),
    (["train", "--task", "mup_mlp_w3"], "width"),
    (["train", "--task", "mixture:mup_mlp_w32+mup_transformer_w32", "--mup"],
     "one μP parameterization"),
    (["eval", "/no/such/file.lopt"], "checkpoint"),
    (["frobnicate"], "frobnicate"),
    # Floats outside float32's range or sane bounds, and negative numbers in any notation.
    (["train", "--meta-lr", "1e300"], "meta_lr"),
    (["train", "--meta-lr", "nan"], "meta_lr"),
    (["train", "--sigma", "-inf"], "sigma"),
    (["train", "--sigma", "-1e-3"], "sigma"),
    (["train", "--sigma", "1e-40"], "sigma"),
    (["train", "--loss-clip", "1e39"], "loss_clip"),
    (["train", "--clip-grad-norm", "inf"], "clip_grad_norm"),
    (["train", "--seed", str(2**40)], "seed"),
    (["train", "--baselines", ","], "baselines"),
    # rule_config values checked against the constructor's annotations.
    (["train", "--rule-config", '{"hidden": "8"}'], "rule_config.hidden"),
    (["train", "--rule-config", '{"hidden": 2.5}'], "rule_config.hidden"),
    (["train", "--rule-config", '{"hidden": true}'], "rule_config.hidden"),
    (["train", "--rule-config", '{"output_scale": null}'], "rule_config.output_scale"),
    (["train", "--rule-config", "2.5"], "rule_config"),
    (["train", "--rule-config", "null"], "rule_config"),
    (["train", "--rule-config", "true"], "rule_config"),
    (["train", "--rule-config", '{"hidden": 100000000}'], "rule_config.hidden"),
    (["train", "--rule", "adafac_mlp", "--rule-config", '{"momentum_decays": ["a"]}'],
     "rule_config.momentum_decays"),
    # A run whose state cannot fit in memory is refused with the estimate, before any work.
    (["train", "--num-runs", "100000000", "--out", "/tmp/lopt-never-written"], "num_runs"),
    (["train", "--rule-config", '{"hidden": 65536}', "--out", "/tmp/lopt-never-written"],
     "rule_config: theta alone needs"),
    # 16 GiB thetas pass "theta alone"; with the meta-gradient and Adam's moments they cannot.
    (["train", "--rule", "celo", "--rule-config", '{"hidden": 65536}', "--out",
      "/tmp/lopt-never-written"], "rule_config: meta-training needs at least 64.0 GiB"),
    (["train", "--rule", "adafac_mlp", "--rule-config", '{"hidden": 65536}', "--out",
      "/tmp/lopt-never-written"], "rule_config: meta-training needs at least 64.0 GiB"),
    (["train", "--horizon", "2147483647", "--truncation", "2147483647", "--out",
      "/tmp/lopt-never-written"], "truncation x num_runs: 2147483647 steps of 128 runs need"),
    # Every phase after meta-training is sized before it starts (issue 37, item 3).
    (["train", "--steps", "2", "--eval-tasks", "2147483647", "--out",
      "/tmp/lopt-never-written"], "eval_tasks x eval_steps: 2147483647 runs of 100 steps"),
    (["train", "--steps", "2", "--eval-steps", "2147483647", "--out",
      "/tmp/lopt-never-written"], "eval_tasks x eval_steps: 256 runs of 2147483647 steps"),
    (["train", "--validate-every", "1", "--validate-tasks", "2147483647", "--out",
      "/tmp/lopt-never-written"], "validate_tasks x validate_steps: 2147483647 runs"),
    (["eval", lopt.pretrained.path("l2l_lstm_quadratic"), "--eval-tasks", "2147483647",
      "--out", "/tmp/lopt-never-written"], "eval_tasks x eval_steps: 2147483647 runs"),
    (["train", "--out", "/proc/lopt-cannot-exist"], "out"),
    # lopt import checks where it writes before reading (issue 37, item 13).
    (["import", "celo", "tests/fixtures/published/celo/theta.state", "--out",
      "/proc/x.lopt"], "out folder '/proc' is not writable"),
    (["train", "--init-from", "/no/such/rule.lopt"], "init_from"),
    # A warm start whose arrays do not fit the rule, refused before anything is written.
    (["train", "--task", "quadratic", "--init-from", "celo2_broad", "--out",
      "/tmp/lopt-never-written"], "init_from: 'celo2_broad' holds a celo2 theta that does not "
                                  "fit rule l2l_lstm"),
])
def test_bad_values_give_one_line_naming_the_field_and_exit_2(argv, field, capsys):
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and field in err


def test_init_from_starts_meta_training_from_the_files_theta():
    from lopt.cli.training import _warm_start

    stored, theta = lopt.load(lopt.pretrained.path("celo2_broad"))
    rule = lopt.rules.make_rule("celo2_base", magnitude="adam")  # same network, other rule
    got = _warm_start(rule, "celo2_broad")
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(theta)):
        np.testing.assert_array_equal(a, b)
    assert _warm_start(rule, "") is None


def test_wandb_without_the_package_is_one_line_and_exit_2(capsys, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    assert main(["train", "--wandb", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'lopt[wandb]'" in err, err
    assert os.listdir(tmp_path) == []


def test_console_script_exit_code():
    proc = subprocess.run([sys.executable, "-m", "lopt", "train", "--horizon", "-5"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == \
        "lopt train: error: horizon must be an integer in [1, 2**31); got -5"


def test_list_shows_every_rule_dataset_task_sampler_and_estimator(capsys):
    from lopt.tasks import MIXTURES, SAMPLERS
    from lopt.tasks.datasets import DATASETS

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in (list(RULES) + list(FAMILIES) + list(ESTIMATORS) + list(DATASETS)
                 + list(SAMPLERS) + [f"mixture:{m}" for m in MIXTURES]):
        assert f"  {name} " in out
    assert len(DATASETS) >= 6 and len(FAMILIES) >= 15 and len(SAMPLERS) >= 7
    from lopt.rules import CONFORMANCE
    for name in ("celo2", "celo2_base", "celo_reference", "adafac_mlp"):
        line = next(x for x in out.splitlines() if x.startswith(f"  {name} "))
        assert ("conformance fixture" in line) == (name in CONFORMANCE), line
    assert "import sources" in out


def test_unavailable_dataset_is_one_line_and_exit_2(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    assert main(["train", "--task", "cifar10_conv", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cifar10" in err and "mnist_5k" in err


def test_train_on_a_mixture_with_normalization_from_the_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LOPT_CACHE_DIR", str(tmp_path / "cache"))
    out = str(tmp_path / "mix")
    argv = ["train", "--task", "mixture:quadratic+iris_logistic", "--normalize",
            "--rule", "per_parameter_mlp", "--steps", "2", "--num-runs", "2",
            "--truncation", "2", "--horizon", "4", "--eval-tasks", "2", "--eval-steps", "4",
            "--baselines", "adam", "--no-progress", "--out", out]
    assert main(argv) == 0
    log = [json.loads(line) for line in open(os.path.join(out, "train_log.jsonl"))]
    assert len(log) == 2
    for name in ("quadratic10", "iris_logistic"):
        assert f"meta_loss/{name}_normalized" in log[0]
        result = json.load(open(os.path.join(out, f"comparison_{name}_normalized.json")))
        assert result["family"] == f"{name}_normalized"
        # Normalized curves start at 1 (the initial loss) for Adam on evaluation instances,
        # up to the difference between tuning and evaluation instances.
        adam = [r for r in result["results"] if r["name"] == "adam"][0]
        assert -2.0 <= min(adam["mean_curve"]) and max(adam["mean_curve"]) <= 2.0
    assert len(os.listdir(tmp_path / "cache" / "normalization")) == 2


def test_train_then_eval_end_to_end(tmp_path, capsys):
    out = str(tmp_path / "run")
    argv = ["train", "--steps", "3", "--num-runs", "4", "--truncation", "3", "--horizon", "6",
            "--eval-tasks", "4", "--eval-steps", "5", "--baselines", "sgd,adam", "--no-progress",
            "--logdir", str(tmp_path / "tb"), "--eval-every", "2", "--validate-tasks", "2",
            "--validate-steps", "4", "--out", out]
    os.makedirs(out)
    open(os.path.join(out, ".tmp-k9l2.lopt"), "w").close()  # a kill during a final save
    assert main(argv) == 0
    assert not any(n.startswith(".tmp-") for n in os.listdir(out))
    # TensorBoard events beside the JSONL log, meta-validation every 2nd step and the last.
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "files"))
    from test_metric_writers import read_events
    events = read_events(str(tmp_path / "tb"))
    assert sorted(events["meta_loss"]) == [0, 1, 2] and sorted(events["valid/mean"]) == [1, 2]
    assert "inner_steps_per_s" in events
    printed = capsys.readouterr().out
    assert "| l2l_lstm (learned) | learned |" in printed
    for name in ("l2l_lstm.lopt", "train_log.jsonl", "comparison.json",
                 "comparison.md", "comparison.png", "train_curve.png", "config.json"):
        assert os.path.getsize(os.path.join(out, name)) > 0
    assert os.listdir(os.path.join(out, "checkpoints")) == ["3"]  # orbax, one folder a step
    first = json.load(open(os.path.join(out, "comparison.json")))
    assert [r["name"] for r in first["results"]] == ["l2l_lstm (learned)", "sgd", "adam"]
    assert len(first["results"][0]["mean_curve"]) == 6
    rule, theta = lopt.load(os.path.join(out, "l2l_lstm.lopt"))
    assert rule.name == "l2l_lstm"

    # An --out eval cannot write is refused before the evaluation, in one line.
    capsys.readouterr()
    assert main(["eval", os.path.join(out, "l2l_lstm.lopt"), "--out", "/proc/lopt-x"]) == 2
    assert "cannot be created" in capsys.readouterr().err
    # eval re-runs the same comparison from the saved settings and gets the same numbers.
    assert main(["eval", os.path.join(out, "l2l_lstm.lopt")]) == 0
    again = json.load(open(os.path.join(out, "comparison.json")))
    for a, b in zip(first["results"], again["results"]):
        np.testing.assert_allclose(a["mean_curve"], b["mean_curve"], rtol=1e-6)
        assert a["learning_rate"] == b["learning_rate"]

    # Resuming with anything changed but a larger step count is refused before a byte is
    # written: the checkpoint's theta was trained with the old settings.
    capsys.readouterr()
    def files():
        return {os.path.join(d, n): open(os.path.join(d, n), "rb").read()
                for d, _, names in os.walk(out) for n in names}

    before = files()
    for flags, named in ((["--meta-lr", "0.01"], "meta_lr 0.003 (now 0.01)"),
                         (["--seed", "1"], "seed 0 (now 1)"),
                         (["--truncation", "2"], "truncation 3 (now 2)"),
                         (["--rule-config", '{"output_scale": 0.2}'],
                          "rule_config.output_scale 0.1 (now 0.2)"),
                         (["--steps", "2"], "at outer step 3: steps may only grow")):
        changed = argv + flags if flags[0] != "--steps" else argv[:1] + flags + argv[3:]
        assert main(changed) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and named in err and "--no-resume" in err, err
    assert files() == before
    # The same settings written another way (flag order, JSON spacing) still resume.
    from lopt.cli import preflight
    from lopt.cli.parser import build_parser, train_config
    from lopt.rules import make_rule

    args = build_parser().parse_args(argv[:-2] + ["--rule-config", '{ "hidden" : 20 }',
                                                  "--steps", "5", "--out", out])
    cfg = train_config(args)
    preflight.check_checkpoint(cfg, make_rule(cfg.learned.rule, **cfg.learned.rule_kwargs()),
                               os.path.join(out, "checkpoints"))


def test_mup_rules_are_trained_and_evaluated_scaled_by_their_tasks_multipliers(tmp_path,
                                                                              monkeypatch):
    """``lopt train --mup`` at width 8 meta-trains, and compares, the rule scaled by the 8-wide
    model's μP multipliers; ``lopt eval`` of its file at width 16 by the 16-wide model's."""
    import jax
    import jax.numpy as jnp

    import lopt.cli.compare
    import lopt.cli.training
    from lopt.tasks import make_family

    seen = []
    for module in (lopt.cli.training, lopt.cli.compare):  # the rule each command compares
        monkeypatch.setattr(module, "run_comparison", lambda rule, theta, *a, **k:
                            seen.append((rule, theta)))
    out = str(tmp_path / "run")
    assert main(["train", "--task", "mup_mlp_w8", "--rule", "per_parameter_mlp", "--mup",
                 "--steps", "1",
                 "--estimator", "es", "--num-runs", "2", "--truncation", "2", "--horizon", "2",
                 "--no-progress", "--out", out]) == 0
    path = os.path.join(out, "per_parameter_mlp.lopt")
    assert main(["eval", path, "--task", "mup_mlp_w16"]) == 0
    plain, theta = lopt.load(path)
    for (rule, _), width in zip(seen, (8, 16)):
        family = make_family(f"mup_mlp_w{width}")
        task = family.build(family.sample(jax.random.PRNGKey(0)))
        params = task.init(jax.random.PRNGKey(0))
        grads = jax.tree.map(jnp.ones_like, params)
        ours = jax.jit(rule.update)(theta, rule.init(theta, params), grads, params)[0]
        base = jax.jit(plain.update)(theta, plain.init(theta, params), grads, params)[0]
        scales = task.step_multipliers(params)
        assert scales["Dense_1"]["kernel"] == 64 / width
        for u, b, m in zip(*(jax.tree.leaves(t) for t in (ours, base, scales))):
            np.testing.assert_allclose(u, m * b, rtol=1e-6)


def test_recipe_sets_every_value_and_flags_beside_it_override():
    from lopt.cli.parser import build_parser, train_config
    from lopt.pretrained.recipes import RECIPES

    for name, (_, values) in RECIPES.items():
        cfg = train_config(build_parser().parse_args(["train", "--recipe", name, "--steps", "7"]))
        flat = cfg.flat()
        assert cfg.run.recipe == name and cfg.run.steps == 7 and cfg.out_dir == f"runs/{name}"
        for field, value in values.items():
            if field != "steps":
                assert flat[field] == value, field


def test_train_flags_are_the_config_groups_fields_one_to_one():
    import dataclasses

    from lopt.cli.config import GROUPS, TrainConfig
    from lopt.cli.parser import build_parser, train_config

    fields = [f.name for group in GROUPS.values() for f in dataclasses.fields(group)]
    assert len(fields) == len(set(fields))  # no flag belongs to two groups
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    dests = {a.dest for a in train._actions if a.dest != "help"}
    assert dests == set(fields)
    cfg = train_config(build_parser().parse_args(
        ["train", "--estimator", "pes", "--sigma", "0.5", "--devices", "2", "--num-runs", "4",
         "--eval-steps", "7", "--rule-config", '{"hidden": 3}', "--no-progress",
         "--validate-every", "5", "--validate-tasks", "3"]))
    assert (cfg.outer.sigma, cfg.distribution.devices, cfg.outer.num_runs,
            cfg.evaluation.eval_steps, cfg.learned.rule_config, cfg.run.progress,
            cfg.run.validate_every, cfg.run.validate_tasks) == \
        (0.5, 2, 4, 7, '{"hidden": 3}', False, 5, 3)
    assert TrainConfig.from_flat(**cfg.flat()) == cfg
    with pytest.raises(ValueError, match="unknown settings colour"):
        TrainConfig.from_flat(colour="red")


@pytest.mark.parametrize("argv", [
    ["--devices", "2", "--num-runs", "4"],  # one device here
    ["--rule-config", '{"hidden": 65536}'],
    ["--logdir", "A_FILE"],
    ["--logdir", "/proc/lopt-no-logdir"],  # a folder no one can create, root included
])
def test_a_refused_run_leaves_an_existing_run_folder_as_it_was(tmp_path, capsys, argv):
    """Every refusal comes before the first write: nothing in --out changes (issue 26)."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text('{"an": "earlier run"}')
    (tmp_path / "a_file").write_text("")
    argv = [str(tmp_path / "a_file") if a == "A_FILE" else a for a in argv]
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["train", "--task", "quadratic", "--steps", "2", "--out", str(out)] + argv) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_bench_refuses_an_out_folder_it_cannot_write_before_any_work(capsys):
    assert main(["bench", "estimators", "--quick", "--out", "/proc/lopt-bench"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot be created" in err[0]


def test_bench_takes_no_repeat_count_to_abort_on(capsys):
    """Issue 26 item 5: `lopt bench estimators --repeats 99999999999999` once aborted the
    process (rc -6); a suite's sizes are its --quick or full presets, and an unknown flag is
    refused in one line."""
    with pytest.raises(SystemExit) as raised:
        main(["bench", "estimators", "--repeats", "99999999999999", "--out", "/tmp/x"])
    err = capsys.readouterr().err.strip().splitlines()
    assert raised.value.code == 2 and len(err) == 1
    assert "unrecognized arguments: --repeats 99999999999999" in err[0]


def test_the_memory_limit_is_the_cgroups_when_lower(tmp_path):
    """Issue 37, item 3: a container's limit, not only the physical memory, bounds a run."""
    from lopt.cli.preflight import memory_limit_bytes, physical_memory_bytes

    v2, v1 = tmp_path / "memory.max", tmp_path / "limit_in_bytes"
    v2.write_text("max\n")
    v1.write_text(f"{2**30}\n")
    assert memory_limit_bytes((str(v2),)) == physical_memory_bytes()
    assert memory_limit_bytes((str(v2), str(v1))) == 2**30
    assert memory_limit_bytes((str(tmp_path / "absent"),)) == physical_memory_bytes()


def test_a_busy_bench_out_folder_is_refused_in_one_line(tmp_path, capsys):
    """Two suites writing one out folder would mix their cached stages (issue 37, item 13)."""
    from lopt.files.run_folder import FolderLock

    out = str(tmp_path / "busy")
    os.makedirs(out)
    with FolderLock(out):
        code = main(["bench", "step_scale", "--quick", "--no-progress", "--out", out])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "is in use by another lopt command" in err[0], err
    assert os.listdir(out) == []


@pytest.mark.parametrize("suite, flag, out, says", [
    ("metz", "--interim", "OUT", "--interim: only pretrained takes it; 'metz' does not"),
    ("metz", "--reverse", "OUT", "--reverse: only pretrained takes it; 'metz' does not"),
    ("pretrained", "--interim", "OUT/none", "--interim: no cached stages in"),
])
def test_a_long_suites_option_is_refused_in_one_line_where_it_cannot_apply(
        tmp_path, capsys, suite, flag, out, says):
    out = out.replace("OUT", str(tmp_path))
    assert main(["bench", suite, flag, "--no-progress", "--out", out]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0], err
    assert os.listdir(tmp_path) == []


def test_paths_with_spaces_and_unicode_work_for_import(tmp_path, capsys):
    out = tmp_path / "ü dir" / "x y.lopt"
    assert main(["import", "celo", "tests/fixtures/published/celo/theta.state",
                 "--out", str(out)]) == 0
    assert lopt.load(str(out))[0].name == "celo_reference"


def test_every_setting_declares_whether_it_shapes_the_run():
    """Issue 38, item 3: the resume check reads each setting's own declaration; a new setting
    without one fails here, not in a user's resume (a missing key counts as a difference)."""
    import dataclasses

    from lopt.cli.config import TrainConfig
    from lopt.cli.preflight import NOT_THE_RUN, run_config

    for group in dataclasses.fields(TrainConfig):
        for f in dataclasses.fields(group.type if isinstance(group.type, type)
                                    else type(group.default)):
            assert isinstance(f.metadata.get("shapes_run"), bool), f"{group.name}.{f.name}"
    # What today's checkpoints were written with: changing it makes every one refuse to resume.
    assert run_config(TrainConfig()).keys() == {
        "task", "rule", "mup", "estimator", "num_runs", "truncation", "horizon", "max_horizon",
        "second_derivatives", "weighting", "objective", "loss_clip", "sigma", "remat",
        "full_horizon", "init_from", "normalize", "meta_lr", "clip_grad_norm", "seed"}
    assert "steps" in NOT_THE_RUN and "seed" not in NOT_THE_RUN
