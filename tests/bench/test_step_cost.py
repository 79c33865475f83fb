"""lopt bench step_cost times whole training steps of every optimizer it names, in turns,
under both jits, and reports each against optax.adam measured in the same rounds."""
import json

import pytest

from lopt.bench.perf import step_cost


@pytest.mark.suites
def test_quick_path_times_every_optimizer_under_both_jits(tmp_path):
    md = step_cost.run(str(tmp_path), quick=True, progress=False)
    assert "## Training step time" in md
    payload = json.loads((tmp_path / "results.json").read_text())
    names = set(step_cost.optimizers())
    for model in step_cost.MODELS:
        for mode in ("nnx.jit", "jax.jit"):
            times = payload["seconds_per_step"][model][mode]
            assert set(times) == names
            assert all(len(v) == step_cost.SIZES["quick"].rounds and min(v) > 0
                       for v in times.values())
            assert payload["ratio_to_adam"][f"{model} {mode} adam"] == 1.0
