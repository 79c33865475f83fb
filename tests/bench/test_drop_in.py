"""The drop-in diagnosis measures what it claims: celo2_broad's step RMS is its β at every step
whatever the gradients do, while Adam's and the grafted rule's fall as training goes on."""
import numpy as np
import pytest

from lopt.bench import drop_in
from lopt.optax_adapter.chains import rule_and_theta


@pytest.mark.suites
def test_celo2_broads_step_rms_is_beta_at_every_step_and_the_grafts_shrinks():
    problem = drop_in.Problem("relu 2x32, 60 steps", 32, 2, 60)
    txs = drop_in.optimizers(problem.steps)
    beta = rule_and_theta(drop_in.SHIPPED)[0].config["step_scale"]
    shipped = drop_in._run(problem, txs[drop_in.SHIPPED], 2)
    np.testing.assert_allclose(shipped["step_rms"], beta, rtol=1e-3)
    for name in ("adam (lr 1e-3)", "Adam magnitude grafted"):
        rms = np.asarray(drop_in._run(problem, txs[name], 2)["step_rms"])
        assert np.all(rms[:, -1] < 0.5 * rms[:, 1]), name


@pytest.mark.suites
def test_quick_path_writes_every_section(tmp_path):
    md = drop_in.run(str(tmp_path), quick=True, progress=False)
    for title in ("Final full-batch training loss", "Hidden weight norms",
                  "Where the step's time goes", "Why adafac_tiny moved"):
        assert f"## {title}" in md
    assert (tmp_path / "results.json").exists() and (tmp_path / "square_norm.png").exists()
