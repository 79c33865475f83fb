"""Every shipped optimizer still computes what it computed when it was shipped: its updates over
24 steps (gradient scales 1 ... 1e-6 mixed within the run and across tensors, a noisy loss)
against the golden sequence in tests/fixtures/golden/: in float64 at 1e-10 relative (what the
rule computes), in float32 at 1e-5 (float32's own rounding: two orders of the same sums move
a celo2 update by up to 5e-6 relative through its five Newton-Schulz iterations, measured
when issue 35 refactored its first layer). A code change that moves one fails here; the fix
is a new rule version or a retrained file, never silent drift (docs/pretrained.md).
celo_tiny's and adafac_tiny's float32 sequences were written by the code that shipped them
(commit 3abe2f1), which their files' feature_semantics "lopt_v1" restores."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lopt
from lopt.pretrained import PRETRAINED

HERE = os.path.join(os.path.dirname(__file__), os.pardir, "fixtures", "golden")
RTOL = 1e-5  # float32
RTOL64 = 1e-10


def _golden(name):
    data = np.load(os.path.join(HERE, f"{name}.npz"))
    meta = json.loads(bytes(data["meta"]))
    keys = sorted({k.split("/")[1] for k in data.files if k.startswith("params/")})
    return data, meta, keys


def test_every_shipped_optimizer_has_a_golden_sequence():
    names = {f[:-4] for f in os.listdir(HERE) if f.endswith(".npz")}
    assert names == set(PRETRAINED)


def _replay(tx, data, keys, meta, dtype=jnp.float32, golden="updates"):
    """(step, tensor, ours, golden) for every step, ``tx`` fed the golden's own parameters,
    gradients and losses in ``dtype``."""
    steps = data["losses"].shape[0]
    update = jax.jit(lambda g, s, p, v: tx.update(g, s, p, value=v))
    state = tx.init({k: jnp.asarray(data[f"params/{k}"][0], dtype) for k in keys})
    for t in range(steps):
        params = {k: jnp.asarray(data[f"params/{k}"][t], dtype) for k in keys}
        grads = {k: jnp.asarray(data[f"grads/{k}"][t], dtype) for k in keys}
        updates, state = update(grads, state, params, jnp.asarray(data["losses"][t], dtype))
        for k in keys:
            yield t, k, np.asarray(updates[k]), data[f"{golden}/{k}"][t]


@pytest.mark.parametrize("name", sorted(PRETRAINED))
def test_shipped_updates_equal_the_golden_sequence(name):
    data, meta, keys = _golden(name)
    assert meta["name"] == name and len(meta["commit"]) == 40
    assert data["losses"].shape[0] >= 20
    scales = [np.abs(data[f"grads/{k}"]).max(axis=tuple(range(1, data[f"grads/{k}"].ndim)))
              for k in keys]
    assert max(s.max() / s.min() for s in scales) >= 1e5  # scales mixed within the run
    assert np.any(np.diff(data["losses"]) > 0) and np.any(np.diff(data["losses"]) < 0)
    tx = lopt.as_optax(name, num_steps=meta["num_steps"])
    for t, k, ours, want in _replay(tx, data, keys, meta):
        np.testing.assert_allclose(
            ours, want, rtol=RTOL, atol=RTOL * float(np.abs(want).max()),
            err_msg=f"{name}: step {t}, tensor {k!r} moved from its golden update "
                    f"(recorded at commit {meta['commit'][:10]})")


@pytest.mark.parametrize("name", sorted(PRETRAINED))
def test_shipped_updates_equal_the_golden_sequence_in_float64(name):
    """Under x64 the shipped file's theta is cast to float64 on load (DESIGN.md: Files) and
    every update comes back finite, in float64, equal to the float64 record."""
    data, meta, keys = _golden(name)
    assert len(meta["commit64"]) == 40
    with jax.enable_x64(True):
        _, theta = lopt.load(lopt.pretrained.path(name))
        assert all(x.dtype == np.float64 for x in jax.tree.leaves(theta)), name
        tx = lopt.as_optax(name, num_steps=meta["num_steps"])
        for t, k, ours, want in _replay(tx, data, keys, meta, jnp.float64, "updates64"):
            assert ours.dtype == np.float64 and np.all(np.isfinite(ours)), (name, t, k)
            np.testing.assert_allclose(
                ours, want, rtol=RTOL64, atol=RTOL64 * float(np.abs(want).max()),
                err_msg=f"{name}: step {t}, tensor {k!r} moved from its float64 golden update "
                        f"(recorded at commit {meta['commit64'][:10]})")


def test_the_float64_sequence_is_the_float32_one_to_float32_rounding():
    """The two records describe one computation: every shipped optimizer's float64 updates
    lie within 1e-3 of the largest of its float32 ones (measured: 2e-4 for hyperadam_mnist,
    whose LSTM divides by small moments over 24 steps; 3e-5 or less for the others), where a
    change of features or epsilons moves them by 1e-2 or more (the December change: > 1e-2)."""
    for name in sorted(PRETRAINED):
        data, _, keys = _golden(name)
        for k in keys:
            want, double = data[f"updates/{k}"], data[f"updates64/{k}"]
            assert np.abs(double - want).max() <= 1e-3 * np.abs(want).max(), (name, k)


def test_the_golden_sequence_catches_the_december_feature_change():
    """adafac_tiny's theta under today's reference features (what it silently ran with from
    2026-12-01 until its file recorded "lopt_v1") is far from its golden updates."""
    data, meta, keys = _golden("adafac_tiny")
    rule, theta = lopt.load(lopt.pretrained.path("adafac_tiny"))
    assert rule.config["feature_semantics"] == "lopt_v1"
    moved = lopt.rules.make_rule(rule.name, **{**rule.config, "feature_semantics": "reference"})
    worst = max(float(np.abs(ours - want).max() / np.abs(want).max())
                for _, _, ours, want in _replay(lopt.as_optax(moved, theta), data, keys, meta))
    assert worst > 1e-2
