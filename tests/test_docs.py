"""Every python code block of README.md and docs/*.md runs."""
import pathlib
import re

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
# docs/torch.md needs the torch extra: tests/torch/test_torch_docs.py runs it (pytest -m torch).
TORCH_DOCS = {ROOT / "docs" / "torch.md"}
DOCS = [ROOT / "README.md"] + sorted(set((ROOT / "docs").rglob("*.md")) - TORCH_DOCS)


def _blocks(path):
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_code_blocks_run(path, tmp_path, monkeypatch):
    blocks = _blocks(path)
    monkeypatch.chdir(tmp_path)
    namespace = {}
    for block in blocks:
        exec(compile(block, str(path), "exec"), namespace)
    if path.name == "README.md":
        assert len(blocks) == 1
        # The README's pretrained optimizer really trains the user's model, untuned: 500
        # steps of a 196-128-10 MLP on MNIST digits it never saw (celo2_graft_v2: 0.950 here).
        assert float(namespace["accuracy"]) > 0.85
        assert np.isfinite(float(namespace["loss"]))


def test_documented_cli_error_is_what_the_cli_prints(capsys):
    from lopt.cli import main

    text = (ROOT / "docs" / "index.md").read_text()
    expected = re.search(r"\$ lopt train --weighting median\n(.*)\n", text).group(1)
    assert main(["train", "--weighting", "median"]) == 2
    assert capsys.readouterr().err.strip() == expected


def test_results_page_is_the_committed_results():
    """docs/results.md is its source with every table taken from benchmarks/SUITE/results.md:
    a regenerated suite without a rebuilt page (or a hand-edited table) fails here."""
    from lopt.bench.results_doc import render

    source = (ROOT / "docs" / "results.src.md").read_text()
    assert "{{" in source
    assert (ROOT / "docs" / "results.md").read_text() == render(source)


def test_results_page_includes_fail_loudly(tmp_path):
    from lopt.bench.results_doc import render

    suite = tmp_path / "benchmarks" / "s"
    suite.mkdir(parents=True)
    (suite / "results.md").write_text("# T\n\nMade by `x` in 1 s.\n\n## Table one\n\n| a |\n|---|\n"
                                      "| 1 |\n\n## Figures\n\n![p.png](p.png)\n")
    out = render("{{s:PROVENANCE}}\n{{s:Table}}\n{{s:Figures}}", tmp_path)
    assert out.startswith("Made by `x` in 1 s.\n#### Table one\n\n| a |\n|---|\n| 1 |\n")
    assert "![p.png](../benchmarks/s/p.png)" in out
    with pytest.raises(KeyError, match="no section 'Nope'"):
        render("{{s:Nope}}", tmp_path)
