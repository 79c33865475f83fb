"""Files (DESIGN.md: Files): file errors, the one atomic write and strict-JSON writer, the
``.lopt`` rule file (its format, ``rule_format``, readable without JAX), training checkpoints,
run folders and result provenance. Names load on first use, so ``lopt.files.rule_format`` and
``lopt.files.errors`` import without JAX."""
from __future__ import annotations

import importlib

_EXPORTS = {"FileFormatError": "lopt.files.errors", "write_atomically": "lopt.files.atomic",
            "write_json": "lopt.files.atomic", "write_text": "lopt.files.atomic",
            "strict": "lopt.files.atomic", "save": "lopt.files.rule_file",
            "load": "lopt.files.rule_file", "load_metadata": "lopt.files.rule_file"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lopt.files' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
