"""Every learned rule keeps its state in float32 for bfloat16 parameters, so a jax.lax.scan
training loop over tx.update compiles (its carry's types must not change) and stays finite."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lopt
from lopt.rules import LEARNED

STEPS = 100


def _params():
    rng = np.random.default_rng(0)
    return {"w": jnp.asarray(rng.standard_normal((4, 3)), jnp.bfloat16),
            "k": jnp.asarray(rng.standard_normal((2, 2, 3)), jnp.bfloat16),
            "b": jnp.zeros((3,), jnp.bfloat16), "s": jnp.asarray(0.5, jnp.bfloat16)}


def _loss(params):
    return sum(jnp.sum(jnp.square(x.astype(jnp.float32) - 0.25)) for x in jax.tree.leaves(params))


def _dtypes(tree):
    return [(jax.tree_util.keystr(path), x.dtype) for path, x in
            jax.tree_util.tree_flatten_with_path(tree)[0]]


@pytest.mark.parametrize("name", sorted(LEARNED))
def test_bf16_params_scan_of_100_steps(name):
    rule = LEARNED[name][0]()
    tx = lopt.as_optax(rule, rule.init_meta(jax.random.PRNGKey(0)), num_steps=STEPS)
    params = _params()
    state = tx.init(params)
    start = _dtypes(state)
    for path, dtype in start:
        assert dtype != jnp.bfloat16, f"{name}: state {path} is bfloat16"

    def step(carry, _):
        params, state = carry
        loss, grads = jax.value_and_grad(_loss)(params)
        updates, state = tx.update(grads, state, params, value=loss)
        return (jax.tree.map(lambda p, u: p + u, params, updates), state), loss

    (params, state), losses = jax.lax.scan(step, (params, state), None, length=STEPS)
    assert _dtypes(state) == start
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(params))
    assert np.all(np.isfinite(np.asarray(losses)))
    assert all(np.all(np.isfinite(np.asarray(x, np.float32))) for x in jax.tree.leaves(state)
               if jnp.issubdtype(x.dtype, jnp.floating))
