"""Every suite is registered by import, sized, and has the one ``run`` signature; every module
that defines a suite's ``run`` is in the registry."""
import inspect
import pathlib

import pytest

import lopt.bench
from lopt.bench.registry import PAPER_SUITES, SUITES

BENCH = pathlib.Path(lopt.bench.__file__).parent


@pytest.mark.parametrize("name", sorted(SUITES))
def test_every_suite_is_sized_and_runs_through_one_signature(name):
    module, description = SUITES[name]
    assert description and {"full", "quick"} <= set(module.SIZES)
    params = inspect.signature(module.run).parameters
    assert list(params)[:4] == ["out", "quick", "command", "progress"]
    assert params["quick"].default is False and params["progress"].default is True


def test_every_module_with_a_suite_run_is_registered():
    registered = {module.__name__ for module, _ in SUITES.values()}
    defining = {".".join(("lopt", "bench", *p.relative_to(BENCH).with_suffix("").parts))
                for p in BENCH.rglob("*.py")
                if "\ndef run(out: str, quick: bool" in p.read_text()}
    assert defining == registered
    assert set(PAPER_SUITES) <= set(SUITES)


def test_the_packages_old_names_reach_the_registry():
    assert lopt.bench.SUITES is SUITES and lopt.bench.PAPER_SUITES is PAPER_SUITES
