"""Benchmark suites run by ``lopt bench SUITE``; results go under ``benchmarks/``. The registry
is ``lopt.bench.registry`` (it imports every suite, so it loads only when asked for)."""
from __future__ import annotations


def __getattr__(name: str):
    if name in ("SUITES", "PAPER_SUITES"):
        from lopt.bench import registry
        return getattr(registry, name)
    raise AttributeError(f"module 'lopt.bench' has no attribute {name!r}")
