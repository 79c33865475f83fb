"""``lopt bench torch_step --quick`` runs through the CLI and reports every optimizer against
AdamW (the full size is a benchmark, run with nothing else on the machine)."""
import json

import pytest

pytest.importorskip("torch", reason="lopt bench torch_step needs the torch extra")
pytestmark = pytest.mark.torch


def test_quick_path_writes_every_optimizers_ratio(tmp_path):
    from lopt.cli import main

    out = tmp_path / "torch_step"
    assert main(["bench", "torch_step", "--quick", "--out", str(out), "--no-progress"]) == 0
    payload = json.loads((out / "results.json").read_text())
    ratios = payload["ratio_to_adamw"]
    names = {k.split(" parameters ")[1] for k in ratios}
    assert names == {"torch.optim.AdamW", "lopt.torch celo2_graft", "lopt.torch adafac_tiny",
                     "lopt JAX celo2_graft", "lopt JAX adafac_tiny"}
    assert all(r > 0 for r in ratios.values())
    assert "| lopt.torch celo2_graft |" in (out / "results.md").read_text()
    profile = payload["profile"]
    assert set(profile) == {"celo2_graft", "adafac_tiny"}
    for table in profile.values():
        assert table and all(op.startswith("aten::") and ms >= 0 and 0 <= share <= 1
                             for op, ms, share in table)
        shares = [share for _, _, share in table]
        assert shares == sorted(shares, reverse=True)
    assert "## Where the time goes" in (out / "results.md").read_text()
