"""``lopt bench lo_side_by_side`` times lopt beside learned_optimization only where that library
imports (the reference environment; never a dependency): elsewhere it refuses in one line,
exit code 2; where it imports, the quick size reports both pairs."""
import importlib.util
import json

from lopt.cli import main


def test_side_by_side_refuses_without_learned_optimization_or_reports_both_pairs(tmp_path,
                                                                               capsys):
    out = tmp_path / "lsbs"
    code = main(["bench", "lo_side_by_side", "--quick", "--out", str(out), "--no-progress"])
    if importlib.util.find_spec("learned_optimization") is None:
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1
        assert "needs learned_optimization importable" in err and "reference-env.sh" in err
        assert not (out / "results.md").exists()
    else:
        assert code == 0
        ratios = json.loads((out / "results.json").read_text())["lo_over_lopt"]
        assert set(ratios) == {"per_parameter_mlp", "adafac_mlp"}
