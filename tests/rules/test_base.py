import jax
import jax.numpy as jnp
import numpy as np

from lopt.rules import per_coordinate, unzip, zeros_per_coordinate


def _coordinate_fn(theta, p, g, h):
    """A small nonlinear per-coordinate map with a hidden vector, standing in for a rule."""
    new_h = jnp.tanh(theta["a"] * h + theta["b"] * g + 0.1 * p)
    return jnp.sum(new_h) * theta["c"], new_h


def test_lifting_equals_explicit_loop_over_every_coordinate():
    key = jax.random.PRNGKey(0)
    params = {"scalar": jnp.asarray(0.3), "vec": jnp.arange(3.0),
              "mat": jnp.linspace(-1, 1, 6).reshape(2, 3), "cube": jnp.ones((2, 1, 2)) * 0.5}
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    grads = jax.tree.unflatten(treedef, [jax.random.normal(k, l.shape) for k, l in zip(keys, leaves)])
    hidden = jax.tree.map(lambda p: jax.random.uniform(key, p.shape + (4,)), params)
    theta = {"a": jnp.linspace(0.1, 0.4, 4), "b": jnp.asarray(0.7), "c": jnp.asarray(-0.5)}

    out = per_coordinate(_coordinate_fn)(theta, params, grads, hidden)
    updates, new_hidden = unzip(params, out, 2)

    for name in params:
        p, g, h = (np.asarray(t[name]) for t in (params, grads, hidden))
        for idx in np.ndindex(p.shape):
            u_ref, h_ref = _coordinate_fn(theta, p[idx], g[idx], h[idx])
            np.testing.assert_allclose(updates[name][idx], u_ref, rtol=1e-6)
            np.testing.assert_allclose(new_hidden[name][idx], h_ref, rtol=1e-6)
        assert updates[name].shape == p.shape
        assert new_hidden[name].shape == p.shape + (4,)


def test_zeros_per_coordinate_shapes_and_dtypes():
    params = {"w": jnp.ones((2, 3), jnp.float32), "b": jnp.ones((3,), jnp.bfloat16)}
    state = zeros_per_coordinate(params, (2, 5))
    assert state["w"].shape == (2, 3, 2, 5) and state["w"].dtype == jnp.float32
    assert state["b"].shape == (3, 2, 5) and state["b"].dtype == jnp.bfloat16
