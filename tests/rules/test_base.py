import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lopt.rules import per_coordinate, unzip, zeros_per_coordinate


def _coordinate_fn(theta, p, g, h):
    """A small nonlinear per-coordinate map with a hidden vector, standing in for a rule."""
    new_h = jnp.tanh(theta["a"] * h + theta["b"] * g + 0.1 * p)
    return jnp.sum(new_h) * theta["c"], new_h



@pytest.mark.parametrize("chunk", [16384, 4, 5])
def test_lifting_equals_explicit_loop_over_every_coordinate(chunk):
    """Chunk 4 cuts "mat" into whole chunks, 5 leaves a tail."""
    key = jax.random.PRNGKey(0)
    params = {"scalar": jnp.asarray(0.3), "vec": jnp.arange(3.0),
              "mat": jnp.linspace(-1, 1, 6).reshape(2, 3), "cube": jnp.ones((2, 1, 2)) * 0.5}
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    grads = jax.tree.unflatten(treedef, [jax.random.normal(k, leaf.shape)
                                         for k, leaf in zip(keys, leaves)])
    hidden = jax.tree.map(lambda p: jax.random.uniform(key, p.shape + (4,)), params)
    theta = {"a": jnp.linspace(0.1, 0.4, 4), "b": jnp.asarray(0.7), "c": jnp.asarray(-0.5)}

    out = per_coordinate(_coordinate_fn, chunk=chunk)(theta, params, grads, hidden)
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
    # bfloat16 parameters get float32 state (a step must return the state's own dtype)
    assert state["b"].shape == (3, 2, 5) and state["b"].dtype == jnp.float32
    assert zeros_per_coordinate(params, (), jnp.int32)["b"].dtype == jnp.int32


def _scaled_fn(theta, scale, p, g):
    return jnp.tanh(theta["a"] * g * scale[0] + scale[1] * p)


@pytest.mark.parametrize("chunk", [16384, 4])
def test_per_tensor_values_reach_every_coordinate_of_their_leaf(chunk):
    params = {"a": jnp.linspace(-1, 1, 9).reshape(3, 3), "b": jnp.arange(2.0), "c": jnp.ones(3)}
    grads = jax.tree.map(lambda p: jnp.cos(p * 3.0), params)
    scales = {"a": jnp.array([2.0, 0.5]), "b": jnp.array([-1.0, 3.0]), "c": jnp.array([1.5, 0.0])}
    theta = {"a": jnp.asarray(0.8)}
    out = per_coordinate(_scaled_fn, chunk=chunk)(theta, params, grads, per_tensor=scales)
    for name in params:
        p, g, s = (np.asarray(t[name]) for t in (params, grads, scales))
        expected = np.tanh(0.8 * g * s[0] + s[1] * p)
        np.testing.assert_allclose(out[name], expected, rtol=1e-6)


def test_chunked_lifting_has_the_gradient_of_the_plain_vmap():
    params = {"w": jnp.linspace(-1, 1, 22).reshape(2, 11), "b": jnp.arange(3.0)}
    grads = jax.tree.map(lambda p: jnp.sin(p * 2.0), params)
    hidden = jax.tree.map(lambda p: jnp.full(p.shape + (4,), 0.2), params)

    def total(theta, lift):
        out = lift(theta, params, grads, hidden)
        return sum(jnp.sum(o[0] ** 2) + jnp.sum(o[1]) for o in jax.tree.leaves(
            out, is_leaf=lambda x: isinstance(x, tuple)))

    def plain(theta, params, *trees):
        return jax.tree.map(lambda p, *t: jax.tree.map(
            lambda o: o.reshape(p.shape + o.shape[1:]),
            jax.vmap(_coordinate_fn, in_axes=(None, 0, 0, 0))(
                theta, p.reshape(-1), *[x.reshape((p.size,) + x.shape[p.ndim:]) for x in t])),
            params, *trees)

    theta = {"a": jnp.linspace(0.1, 0.4, 4), "b": jnp.asarray(0.7), "c": jnp.asarray(-0.5)}
    got = jax.grad(total)(theta, per_coordinate(_coordinate_fn, chunk=4))
    want = jax.grad(total)(theta, plain)
    for k in theta:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5)


@pytest.mark.parametrize("shape", [(7, 2, 5), (7, 20, 1), (7, 12, 8), (7, 1, 3)])
def test_linear_is_the_matmul_it_rewrites(shape):
    from lopt.rules.nets import linear
    n, k, m = shape
    x = np.random.default_rng(0).normal(size=(n, k)).astype(np.float32)
    w = np.random.default_rng(1).normal(size=(k, m)).astype(np.float32)
    np.testing.assert_allclose(linear(jnp.asarray(x), jnp.asarray(w)), x @ w, rtol=1e-5,
                               atol=1e-5)

