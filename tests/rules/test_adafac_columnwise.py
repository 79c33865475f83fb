"""adafac_mlp's and celo's updates of a large tensor, run column by column (from
``COLUMNWISE_MIN`` coordinates, ``nets.columnwise_network``), equal the MLP on the explicitly
normalized feature groups (small_fc_lopt's definition, as the update computes it on small
tensors), in float64: both feature semantics, learned decays off their start, every kind of
tensor."""
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lopt
from lopt.rules import make_rule

adafac = importlib.import_module("lopt.rules.adafac_mlp")


def _three_updates(tx, params):
    state, out = tx.init(params), []
    for t in range(3):
        grads = jax.tree.map(lambda p, t=t: jnp.sin(p * (t + 1.0)) * 10.0 ** -t, params)
        updates, state = tx.update(grads, state, params, value=jnp.float64(2.0 - 0.3 * t))
        out.append(updates)
        params = jax.tree.map(lambda p, u: p + u, params, updates)
    return out


@pytest.mark.parametrize("name", ["adafac_mlp", "celo"])
@pytest.mark.parametrize("semantics", ["reference", "lopt_v1"])
def test_the_update_is_the_same_column_by_column(name, semantics, monkeypatch):
    with jax.enable_x64(True):
        n = jnp.arange(4 * 5 * 6 * 3, dtype=jnp.float64)
        params = {"w": jnp.cos(n[:60]).reshape(6, 10), "conv": jnp.sin(n).reshape(4, 5, 6, 3),
                  "b": jnp.linspace(-1.0, 1.0, 7), "s": jnp.float64(0.3)}
        rule = make_rule(name, feature_semantics=semantics)
        theta = rule.init_meta(jax.random.PRNGKey(0))
        theta["decays"] = jax.tree.map(lambda d: d + 0.05, theta["decays"])
        steps = {"num_steps": 10} if rule.wants_num_steps else {}
        runs = []
        for threshold in (1, 10**9):
            monkeypatch.setattr(adafac, "COLUMNWISE_MIN", threshold)
            runs.append(_three_updates(lopt.as_optax(rule, theta, **steps), params))
        for a, b in zip(*runs):
            for k in a:
                assert a[k].dtype == jnp.float64
                np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b[k]), rtol=1e-10,
                                           atol=1e-12 * float(jnp.abs(b[k]).max()))
        assert any(float(jnp.abs(a["w"] - b["w"]).max()) > 0 for a, b in zip(*runs)), \
            "the two paths should differ by float reassociation at least once"
