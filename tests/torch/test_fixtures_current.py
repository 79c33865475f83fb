"""The torch fixtures are what lopt's JAX rules compute now (needs no torch; in `pytest -m
torch` with the rest of lopt.torch's proof, out of the default run's 10 minutes): a change to
a JAX rule that moves its updates fails here, so lopt.torch is never proven equal to an old
version of the rule."""
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "fixtures", "torch")
pytestmark = pytest.mark.torch
spec = importlib.util.spec_from_file_location("make_torch_fixtures",
                                              os.path.join(HERE, "make_fixtures.py"))
make = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make)


@pytest.mark.parametrize("name", sorted(list(make.RULES) + list(make.MULO) + list(make.CHAINS)))
def test_the_fixture_is_the_jax_rules_run_today(name):
    stored = np.load(os.path.join(HERE, f"{name}.npz"))
    now = make.run(name)
    assert sorted(stored.files) == sorted(now)
    # To float32 rounding: XLA's optimization level (the tests run at 0, conftest.py) moves
    # the last bits; a change of the rule moves far more than 1e-5 of a step.
    for key in now:
        scale = np.max(np.abs(stored[key]), axis=tuple(range(1, stored[key].ndim)),
                       keepdims=True) if stored[key].ndim > 1 else np.abs(stored[key])
        # the μLO fixture's one NaN gradient must stay where it is
        assert np.array_equal(np.isnan(now[key]), np.isnan(stored[key])), key
        error = np.abs(np.nan_to_num(now[key]) - np.nan_to_num(stored[key])) \
            / np.maximum(np.nan_to_num(scale), 1e-30)
        # the parameters carry 24 steps of those roundings (AdamW's 0.2-sized steps among them);
        # VeLO amplifies float32's (test_equal_to_jax.py's TOLERANCE)
        bound = 1e-4 if key.startswith("p_") or name in make.FLOAT64 else 1e-5
        assert float(error.max()) <= bound, (key, float(error.max()))


@pytest.mark.parametrize("name", make.FLOAT64)
def test_the_float64_fixture_is_the_jax_rules_x64_run_today(name):
    """NAME.float64.npz is what the JAX rule computes in x64 mode now (a fresh process: x64 is
    set at start-up), to 1e-10."""
    script = (f"import sys, numpy as np; sys.path.insert(0, {HERE!r}); import make_fixtures as m;"
              f"stored = np.load(m.fixture_path({name!r})); now = m.run({name!r});"
              "assert sorted(stored.files) == sorted(now);"
              "err = max(float(np.max(np.abs(now[k] - stored[k]))"
              " / max(float(np.max(np.abs(stored[k]))), 1e-300)) for k in now);"
              "print(err); assert err <= 1e-10, err")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env={**os.environ, "JAX_ENABLE_X64": "1"}, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
