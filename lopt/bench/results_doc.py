"""Assemble ``docs/results.md`` from its hand-written commentary (``docs/results.src.md``) and the
tables of the committed suite results, so the document can never drift from the numbers.

In the source, ``{{SUITE:Title}}`` stands for the section of ``benchmarks/SUITE/results.md``
whose heading starts with ``Title`` (heading demoted to level 4), and ``{{SUITE:PROVENANCE}}``
for that file's provenance line. ``python -m lopt.bench.results_doc`` rewrites the document.
"""
from __future__ import annotations

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
INCLUDE = re.compile(r"\{\{(\w+):([^}]*)\}\}")


def sections(results_md: str) -> tuple[str, dict]:
    """A results.md's provenance line and its ``## `` sections by heading."""
    provenance = next(line for line in results_md.splitlines() if line.startswith("Made by"))
    parts = re.split(r"^## ", results_md, flags=re.M)[1:]
    return provenance, {p.split("\n", 1)[0].strip(): p for p in parts}


def render(source: str, root: pathlib.Path = ROOT) -> str:
    """The source with every include replaced; a missing suite or section is a KeyError."""
    cache: dict = {}

    def include(match):
        suite, title = match.group(1), match.group(2).strip()
        if suite not in cache:
            path = root / "benchmarks" / suite / "results.md"
            cache[suite] = sections(path.read_text())
        provenance, found = cache[suite]
        if title == "PROVENANCE":
            return provenance
        heading = next((h for h in found if h.startswith(title)), None)
        if heading is None:
            raise KeyError(f"benchmarks/{suite}/results.md has no section {title!r}")
        body = found[heading].split("\n", 1)[1].strip()
        # Figures are linked relative to the suite's folder.
        body = re.sub(r"!\[([^]]*)\]\(([^)/]+\.png)\)",
                      lambda m: f"![{m.group(1)}](../benchmarks/{suite}/{m.group(2)})", body)
        return f"#### {heading}\n\n{body}\n"

    return INCLUDE.sub(include, source)


def main() -> int:
    source = (ROOT / "docs" / "results.src.md").read_text()
    (ROOT / "docs" / "results.md").write_text(render(source))
    print("wrote docs/results.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
