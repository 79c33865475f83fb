"""docs/torch.md's python blocks run (they need torch, so here rather than tests/test_docs.py)."""
import pathlib
import re

import pytest

pytest.importorskip("torch", reason="docs/torch.md needs the torch extra")
pytestmark = pytest.mark.torch

PAGE = pathlib.Path(__file__).resolve().parents[2] / "docs" / "torch.md"


def test_the_torch_page_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {}
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, str(PAGE), "exec"), namespace)
