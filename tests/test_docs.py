"""Every python code block of README.md and docs/*.md runs."""
import pathlib
import re

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md"] + sorted((ROOT / "docs").rglob("*.md"))


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
        # The README's pretrained optimizer really optimizes: 100 steps from loss ‖y‖².
        initial = float(np.sum(np.asarray(namespace["y"]) ** 2))
        assert float(namespace["loss"]) < 0.1 * initial


def test_documented_cli_error_is_what_the_cli_prints(capsys):
    from lopt.cli import main

    text = (ROOT / "docs" / "index.md").read_text()
    expected = re.search(r"\$ lopt train --weighting median\n(.*)\n", text).group(1)
    assert main(["train", "--weighting", "median"]) == 2
    assert capsys.readouterr().err.strip() == expected
