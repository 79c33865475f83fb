"""The shipped L2L LSTM does what the committed benchmark says, on quadratics it never saw."""
import json
import pathlib
import re

import jax
import numpy as np
import pytest

import lopt
import lopt.files.published
from lopt.evaluation import Instances, compare
from lopt.pretrained import PRETRAINED, path
from lopt.rules import adam, nesterov, rmsprop, sgd
from lopt.tasks import quadratic_family

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_pretrained_l2l_beats_every_tuned_baseline_on_fresh_quadratics():
    rule, theta = lopt.load(path("l2l_lstm_quadratic"))
    results = compare({"l2l": (rule, theta)},
                      {"sgd": sgd, "nesterov": nesterov, "rmsprop": rmsprop, "adam": adam},
                      quadratic_family(), Instances(jax.random.PRNGKey(2026), 64), num_steps=100)
    learned, *baselines = [r.summary() for r in results]
    for b in baselines:
        assert not b["lr_at_grid_edge"], b["name"]
        assert learned["final_mean"] < b["final_mean"], (b["name"], b["final_mean"])


def test_committed_benchmark_is_the_shipped_optimizer():
    # the same rule, config and theta (the shipped file is re-written in format 3, whose
    # checksum covers the header too)
    made, made_theta = lopt.load(str(ROOT / "benchmarks" / "l2l_quadratic" / "l2l_lstm.lopt"))
    rule, theta = lopt.load(path("l2l_lstm_quadratic"))
    assert (rule.name, rule.config) == (made.name, made.config)
    for a, b in zip(jax.tree.leaves(theta), jax.tree.leaves(made_theta), strict=True):
        np.testing.assert_array_equal(a, b)
    table = json.loads((ROOT / "benchmarks" / "l2l_quadratic" / "comparison.json").read_text())
    learned = [r for r in table["results"] if r["learning_rate"] is None]
    assert len(learned) == 1 and len(table["results"]) == 5


# A tiny task each shipped optimizer never trained on an instance of: the seed-family rules'
# own kind (a 20-sigmoid MLP, on digits rather than MNIST), the general ones an unseen deeper
# ReLU MLP. (celo_tiny barely moves the 20-sigmoid MLP in 40 steps: 2.38 -> 2.12.)
HELD_OUT = {"l2l_lstm_quadratic": "quadratic", "celo_tiny": "digits_mlp_3x32",
            "adafac_tiny": "digits_mlp_3x32", "celo_released": "digits_mlp_3x32",
            "celo2_broad": "digits_mlp_3x32"}


@pytest.mark.parametrize("name", sorted(PRETRAINED))
def test_shipped_file_loads_matches_its_config_and_lowers_a_held_out_loss(name):
    from lopt.evaluation import diverged, loss_curves
    from lopt.files.rule_file import load_metadata
    from lopt.tasks import make_family

    rule, theta = lopt.load(path(name))
    meta = load_metadata(path(name))
    assert meta["rule"] == rule.name and meta["config"] == rule.config
    template = jax.eval_shape(rule.init_meta, jax.random.PRNGKey(0))
    assert jax.tree.structure(theta) == jax.tree.structure(template)
    for a, b in zip(jax.tree.leaves(theta), jax.tree.leaves(template)):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert np.all(np.isfinite(a))
    family = make_family(HELD_OUT.get(name, "digits_mlp"))
    curves = np.asarray(jax.jit(lambda th: loss_curves(
        rule, th, family, jax.random.PRNGKey(777), num_tasks=4, num_steps=40))(theta))
    assert not diverged(curves).any()
    assert curves[-1].mean() < 0.8 * curves[0].mean()
    # The public entry point trains with no theta, no tuning and no network.
    tx = lopt.as_optax(name, num_steps=40)
    params = {"w": jax.numpy.ones((3, 2))}
    updates, _ = tx.update({"w": jax.numpy.ones((3, 2))}, tx.init(params), params,
                           value=jax.numpy.float32(1.0))
    assert np.all(np.isfinite(updates["w"]))


def test_celo_released_is_the_import_of_celos_published_file(tmp_path):
    """tests/fixtures/published/celo/theta.state is amoudgl/celo's algoperf/submissions/celo/
    theta.state (its released Celo, MIT); importing it gives the shipped file's tensors."""
    import hashlib

    from lopt.files.rule_file import load_metadata

    source = ROOT / "tests" / "fixtures" / "published" / "celo" / "theta.state"
    meta = load_metadata(path("celo_released"))["extra"]["imported_from"]
    assert meta["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert meta["source"] == "celo"
    lopt.files.published.import_weights("celo", str(source), str(tmp_path / "c.lopt"))
    (rule, theta), (shipped_rule, shipped) = lopt.load(str(tmp_path / "c.lopt")), \
        lopt.load(path("celo_released"))
    assert rule.config == shipped_rule.config and rule.name == "celo_reference"
    for a, b in zip(jax.tree.leaves(theta), jax.tree.leaves(shipped)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", [n for n in ("celo_tiny", "adafac_tiny") if n in PRETRAINED])
def test_general_purpose_file_is_the_one_its_committed_recipe_made(name):
    """The shipped theta is the recipe run's output, bit for bit, and its committed config is
    the recipe. The shipped file adds one setting the run's file predates: the feature
    semantics it was meta-trained under ("lopt_v1"; tests/pretrained/test_golden_updates.py)."""
    from lopt.pretrained.recipes import RECIPES

    run = ROOT / "benchmarks" / "pretrained" / "runs" / name
    rule, theta = lopt.load(path(name))
    made, made_theta = lopt.load(str(run / f"{rule.name}.lopt"))
    assert rule.config == {**made.config, "feature_semantics": "lopt_v1"}
    for a, b in zip(jax.tree.leaves(theta), jax.tree.leaves(made_theta), strict=True):
        np.testing.assert_array_equal(a, b)
    config = _stored_config(run)
    renamed = {"objective": {"eval": "valid"}}  # lopt 0.1's name of the validation objective
    for field, value in RECIPES[name][1].items():
        stored = renamed.get(field, {}).get(config[field], config[field]) \
            if isinstance(config[field], str) else config[field]
        assert stored == (list(value) if isinstance(value, tuple) else value), field
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(config["steps"]))


@pytest.mark.parametrize("recipe", [r for r in ("celo2_broad", "celo2_graft")
                                    if r in PRETRAINED])
def test_a_celo2_recipe_ships_its_run_at_the_step_scale_chosen_on_meta_training(recipe):
    """The shipped theta is the recipe run's, its one learning rate the one lopt bench
    step_scale chose on the recipe mixture's tuning instances, and the run's log holds its
    meta-validation."""
    from lopt.files.rule_file import load_metadata
    from lopt.pretrained.recipes import RECIPES

    run = ROOT / "benchmarks" / "pretrained" / "runs" / recipe
    (rule, theta), (trained, trained_theta) = lopt.load(path(recipe)), \
        lopt.load(str(run / "celo2.lopt"))
    for a, b in zip(jax.tree.leaves(theta), jax.tree.leaves(trained_theta)):
        np.testing.assert_array_equal(a, b)
    prefix = "" if recipe == "celo2_broad" else f"{recipe}_"
    chosen = json.loads((ROOT / "benchmarks" / "pretrained" / "step_scale" / "results.json")
                        .read_text())[f"{prefix}trained"]
    assert rule.config == {**trained.config, "step_scale": chosen["best"]}
    assert chosen["best"] in chosen["grid"]
    extra = load_metadata(path(recipe))["extra"]
    assert extra["meta_trained_step_scale"] == trained.config["step_scale"]
    config = _stored_config(run)
    for field, value in RECIPES[recipe][1].items():
        assert config[field] == (list(value) if isinstance(value, tuple) else value), field
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(config["steps"]))
    checked = [r["step"] for r in log if "valid/mean" in r]
    every = config["validate_every"]  # every 100th outer step and the last
    assert checked == sorted(set(range(every - 1, config["steps"], every))
                             | {config["steps"] - 1})


@pytest.mark.parametrize("version", [v for v in ("celo2_graft_v2",) if v in PRETRAINED])
def test_a_recipe_version_ships_its_run_at_the_step_scale_chosen_over_short_and_long_runs(
        version):
    """A version keeps its recipe run's rule and theta; its learning rate and weight decay are
    the grid point with the fewest divergences, then the lowest worst family, over the
    committed 300-step and long-horizon sweeps on the recipe mixture's tuning instances (lopt
    bench step_scale)."""
    from lopt.bench.step_scale import VERSIONS, worst_family_index
    from lopt.files.rule_file import load_metadata

    recipe, decay_grid, long = VERSIONS[version]
    run = ROOT / "benchmarks" / "pretrained" / "runs" / recipe / "celo2.lopt"
    (rule, theta), (trained, trained_theta) = lopt.load(path(version)), lopt.load(str(run))
    for a, b in zip(jax.tree.leaves(theta), jax.tree.leaves(trained_theta)):
        np.testing.assert_array_equal(a, b)
    chosen = json.loads((ROOT / "benchmarks" / "pretrained" / "step_scale" / "results.json")
                        .read_text())[version]
    assert chosen["steps"] == [300, long]
    want = [[trained.config["step_scale"] * k, decay] for decay, ks in decay_grid for k in ks]
    np.testing.assert_allclose(chosen["grid"], want, rtol=1e-12)
    short, longer = chosen["scores"]
    assert chosen["best"] == chosen["grid"][worst_family_index(short + longer)]
    beta, decay = chosen["best"]
    assert rule.config == {**trained.config, "step_scale": beta,
                           **({"weight_decay": decay} if decay else {})}
    assert load_metadata(path(version))["extra"]["version"] == version


def _stored_config(run) -> dict:
    """A run's config.json under today's setting names (lopt.files.run_folder.RENAMED_SETTINGS:
    the runs predate num_tasks -> num_runs)."""
    from lopt.files.run_folder import RENAMED_SETTINGS

    stored = json.loads((run / "config.json").read_text())
    return {RENAMED_SETTINGS.get(k, k): v for k, v in stored.items()}


def _as_printed(value: float, printed: str) -> float:
    """``value`` rounded to as many significant digits as ``printed`` shows."""
    digits = len(printed.lstrip("-").replace(".", "").lstrip("0"))
    return float(f"{value:.{digits}g}")


@pytest.fixture(scope="module")
def meta_test():
    return json.loads((ROOT / "benchmarks" / "pretrained" / "results.json").read_text())


@pytest.mark.parametrize("name", ["celo_tiny", "adafac_tiny", "celo2_broad", "celo_released",
                                  "celo2_graft", "celo2_graft_v2"])
def test_descriptions_quote_the_committed_meta_test(name, meta_test):
    """What ``lopt list`` says of a general optimizer (task count, divergences, catastrophic runs,
    wins over default Adam, IQM loss, IQM speedup over Adam tuned once) is what
    benchmarks/pretrained/results.json holds."""
    table = meta_test
    text = PRETRAINED[name][1]
    assert f"On {len(table['tasks'])} unseen tasks" in text
    worst = table["robustness"][name]
    assert f"{worst['diverged']} divergences" in text
    assert f"{worst['catastrophic']} catastrophic runs of {worst['runs']}" in text
    loss = re.search(r"IQM normalized loss (-?[0-9.]+)", text).group(1)
    assert float(loss) == _as_printed(table["iqm_loss"][name]["iqm"], loss)
    speedup = re.search(r"IQM speedup ([0-9.]+) over (?:globally tuned )?Adam", text).group(1)
    assert float(speedup) == _as_printed(
        table["iqm_speedup"][f"{name} vs adam (global lr)"]["iqm"], speedup)
    wins = re.search(r"beats Adam lr 1e-3 on (\d+)", text)
    if wins:
        mean = {label: {s["name"]: s["final_mean"] for s in rows}
                for label, rows in table["results"].items()}
        beaten = sum(m[name] < m["adam (lr 1e-3)"] for m in mean.values())
        assert int(wins.group(1)) == beaten


@pytest.mark.parametrize("name", sorted(PRETRAINED))
def test_every_shipped_file_records_the_semantics_it_was_made_under(name):
    """Issue 36, item 5: the record is what makes a later code change keep a shipped file's
    meaning (lopt.files.semantics maps it to a config, or the file is refused)."""
    from lopt.files.rule_file import load_metadata
    from lopt.files.semantics import current_version

    header = load_metadata(path(name))
    assert header["semantics"] == current_version(header["rule"])
