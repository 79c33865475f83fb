"""Every seed suite's ``lopt bench SUITE --quick`` path, run from the CLI at its smallest size
(the suite's ``tiny`` size in place of ``quick``): files, provenance, protocol, resume."""
import json
import os

import jax
import numpy as np
import pytest

from lopt.bench.registry import PAPER_SUITES
from lopt.bench.registry import SUITES as ALL_SUITES
from lopt.cli import main
from lopt.evaluation.protocol import EVAL_SEED, TUNE_SEED

SUITES = sorted(PAPER_SUITES)


def run_quick(name, out, monkeypatch):
    module = PAPER_SUITES[name][0]
    monkeypatch.setitem(module.SIZES, "quick", module.SIZES["tiny"])
    assert main(["bench", name, "--quick", "--out", out, "--no-progress"]) == 0
    with open(os.path.join(out, "results.json")) as f:
        return json.load(f)


@pytest.mark.suites
@pytest.mark.parametrize("name", SUITES)
def test_quick_path_writes_results_with_provenance_and_protocol(name, tmp_path, monkeypatch):
    monkeypatch.setenv("LOPT_CACHE_DIR", str(tmp_path / "cache"))
    out = str(tmp_path / name)
    result = run_quick(name, out, monkeypatch)
    prov = result["provenance"]
    assert prov["command"] == f"lopt bench {name} --quick --out {out} --no-progress"
    assert prov["lopt_version"] and prov["wall_s"] > 0 and "CPU" in prov["machine"]
    assert prov["commit"] is None or len(prov["commit"]) == 40
    md = open(os.path.join(out, "results.md")).read()
    assert md.startswith("# ") and f"`{prov['command']}`" in md
    assert "| " in md  # at least one table
    pngs = [f for f in os.listdir(out) if f.endswith(".png")]
    assert pngs and all(f"({f})" in md for f in pngs)
    if name != "metz":  # metz's first two parts compare estimators, not optimizers
        assert f"seed {EVAL_SEED}" in md and f"seed {TUNE_SEED}" in md
    if name == "zoo":
        # Resume: every stage is read back, so a second run gives the same numbers.
        again = run_quick(name, out, monkeypatch)
        assert again["iqm"] == result["iqm"] and again["results"] == result["results"]
        assert again["provenance"]["wall_s"] < prov["wall_s"]
        # Every stage records the commit and time that made it; a resumed run names them all.
        assert prov["stages"] and not any(s["cached"] for s in prov["stages"].values())
        assert all(s["commit"] == prov["commit"] and s["wall_s"] >= 0
                   for s in prov["stages"].values())
        resumed = again["provenance"]
        assert all(s["cached"] for s in resumed["stages"].values())
        assert resumed["stages"].keys() == prov["stages"].keys()
        assert [r["wall_s"] for r in resumed["earlier_invocations"]] == [prov["wall_s"]]
        assert "It resumed" in open(os.path.join(out, "results.md")).read()
        # The extra baselines stage joins the same comparison.
        names = [s["name"] for s in result["results"]["iris_logistic"]]
        assert "momentum" in names and "adam" in names


@pytest.mark.suites
@pytest.mark.parametrize("name", ["mixture", "estimators"])
def test_every_suite_has_the_one_layout(name, tmp_path, monkeypatch):
    """The suites beside the papers' write the same files through the same Suite."""
    module = ALL_SUITES[name][0]
    monkeypatch.setitem(module.SIZES, "quick", module.SIZES["tiny"])
    out = str(tmp_path / name)
    assert main(["bench", name, "--quick", "--out", out, "--no-progress"]) == 0
    result = json.load(open(os.path.join(out, "results.json")))
    md = open(os.path.join(out, "results.md")).read()
    assert result["suite"] == name and result["provenance"]["stages"]
    assert md.startswith("# ") and f"`{result['provenance']['command']}`" in md and "| " in md


def test_an_unknown_suite_is_one_line(capsys):
    assert main(["bench", "nope"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.parametrize("family_name", ["quadratic", "digits_mlp"])
def test_tuning_and_evaluation_instances_never_overlap(family_name):
    from lopt.outer.unroll import Horizon, init_inner_batch
    from lopt.rules import adam
    from lopt.tasks import make_family

    family = make_family(family_name)

    def instances(seed):
        batch = init_inner_batch(adam(), family, {}, jax.random.PRNGKey(seed), 16, Horizon(10),
                                 stagger=False)
        leaves = jax.tree.leaves((batch.cfg, batch.params))
        return np.concatenate([np.asarray(x).reshape(16, -1) for x in leaves], axis=1)

    tune, evaluation = instances(TUNE_SEED), instances(EVAL_SEED)
    for row in tune:
        assert not np.any(np.all(np.isclose(evaluation, row[None]), axis=1))
