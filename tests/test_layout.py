"""The package's layout is DESIGN.md's: the layers contract lists exactly its packages, at most
four modules at the top, moved modules still import under their old names, and ``as_optax``
stays light."""
import importlib
import json
import pathlib
import subprocess
import sys
import warnings

import pytest

import lopt

ROOT = pathlib.Path(__file__).resolve().parents[1]
# DESIGN.md: "cli → bench → evaluation → outer → {optax_adapter, pretrained} → files →
# {tasks, rules}"; tasks and rules never import each other.
DESIGN_LAYERS = ["lopt.cli", "lopt.bench", "lopt.evaluation", "lopt.outer",
                 "lopt.optax_adapter : lopt.pretrained", "lopt.files", "lopt.tasks | lopt.rules"]
SHIMS = {"mup.py"}  # lopt.mup: the documented μP names, from both halves
tomllib = pytest.importorskip("tomllib")  # Python 3.11's; CI runs 3.11


def test_the_layers_contract_is_designs_list_and_places_every_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    (contract,) = [c for c in contracts if c["type"] == "layers"]
    assert contract["layers"] == DESIGN_LAYERS
    placed = {name.strip() for layer in DESIGN_LAYERS for name in layer.replace("|", ":")
              .split(":")}
    packages = {f"lopt.{p.name}" for p in (ROOT / "lopt").iterdir()
                if (p / "__init__.py").exists()}
    # DESIGN: "torch reads files' format without importing JAX": its own contract.
    assert packages == placed | {"lopt.torch"}
    (torch_contract,) = [c for c in contracts if c["type"] == "forbidden"]
    assert torch_contract["source_modules"] == ["lopt.torch"]
    assert {"jax", "lopt.rules", "lopt.files.rule_file"} <= set(torch_contract["forbidden_modules"])


def test_at_most_four_modules_at_the_top():
    modules = sorted(p.name for p in (ROOT / "lopt").glob("*.py"))
    assert len(modules) <= 4
    assert set(modules) == {"__init__.py", "__main__.py"} | SHIMS


@pytest.mark.parametrize("old", sorted(lopt.MOVED_MODULES))
def test_a_moved_module_imports_under_its_old_name_with_a_dated_warning(old):
    new, removed_in = lopt.MOVED_MODULES[old]
    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)
    assert any(issubclass(w.category, DeprecationWarning) and new in str(w.message)
               and f"lopt {removed_in}" in str(w.message) for w in caught)
    assert getattr(lopt, old.split(".")[-1]) is module


# Every name users imported from a module that moved or split, at its old place.
OLD_NAMES = {
    "lopt.mup": ["mup_rule", "mup_rule_for", "task_multipliers", "mulo_chain",
                 "mup_lr_multipliers", "finite_gradients", "scale_updates", "mup_multipliers",
                 "mup_transformer_multipliers"],
    "lopt.harness": ["rule_and_theta", "scale_by_celo2", "param_labels", "celo2_chain",
                     "coupled_weight_decay", "velo_chain", "EMBEDDING_NAMES", "VELO_MAX_STEPS"],
    "lopt.recipes": ["RECIPES", "recipe_config"],
    "lopt.optax_adapter": ["as_optax", "load_named", "float_leaves"],
    "lopt": ["as_optax", "scale_by_celo2", "celo2_chain", "velo_chain", "param_labels",
             "import_weights", "save", "load", "Task", "TaskFamily", "UpdateRule", "Estimator",
             "rules", "tasks", "outer", "mup"],
}


@pytest.mark.parametrize("module", sorted(OLD_NAMES))
def test_every_old_public_name_still_imports(module):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        found = importlib.import_module(module)
    missing = [n for n in OLD_NAMES[module] if not hasattr(found, n)]
    assert not missing


def test_as_optax_imports_neither_the_cli_bench_checkpoints_nor_datasets():
    code = ("import sys, json, lopt; lopt.as_optax('celo2_graft', num_steps=10); "
            "print(json.dumps(sorted(sys.modules)))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True,
                                       text=True, check=True).stdout)
    heavy = ("lopt.cli", "lopt.bench", "lopt.evaluation", "lopt.outer", "lopt.tasks", "orbax",
             "flax", "tensorflow_datasets")
    assert [m for m in loaded if m.startswith(heavy)] == []
