import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lopt.rules import l2l_lstm, log_sign_preprocess


def test_preprocessing_matches_seed_001_piecewise_formula():
    p = 10.0
    g = np.array([3.0, -0.5, 1e-3, -1e-3, np.exp(-p) * 1.01, np.exp(-p) * 0.5, -1e-6, 0.0])
    out = np.asarray(log_sign_preprocess(jnp.asarray(g), p))
    for gi, (a, b) in zip(g, out):
        if abs(gi) >= np.exp(-p):
            np.testing.assert_allclose([a, b], [np.log(abs(gi)) / p, np.sign(gi)], rtol=1e-5)
        else:
            np.testing.assert_allclose([a, b], [-1.0, np.exp(p) * gi], rtol=1e-5, atol=1e-7)


@pytest.fixture(scope="module")
def rule_and_theta():
    rule = l2l_lstm(hidden=6, layers=2)
    theta = rule.init_meta(jax.random.PRNGKey(3))
    # Larger read-out weights than the init's so the test sees clearly non-zero steps.
    theta["out"]["w"] = theta["out"]["w"] * 100
    return rule, theta


def _grads(params, key):
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(treedef, [jax.random.normal(k, leaf.shape, leaf.dtype)
                                        for k, leaf in zip(keys, leaves)])


def test_shapes_dtypes_and_structure_preserved(rule_and_theta):
    rule, theta = rule_and_theta
    params = {"w": jnp.ones((3, 4)), "b": jnp.zeros(4), "s": jnp.asarray(1.0)}
    state = rule.init(theta, params)
    updates, new_state = rule.update(theta, state, _grads(params, jax.random.PRNGKey(0)), params)
    assert jax.tree.structure(updates) == jax.tree.structure(params)
    for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(params)):
        assert u.shape == p.shape and u.dtype == p.dtype
    assert jax.tree.structure(new_state) == jax.tree.structure(state)
    assert new_state["h"]["w"].shape == (3, 4, 2, 6)


def test_permutation_equivariance_and_separate_hidden_states(rule_and_theta):
    rule, theta = rule_and_theta
    params = {"x": jnp.zeros(7)}
    state = rule.init(theta, params)
    grads = [_grads(params, jax.random.PRNGKey(i)) for i in range(4)]
    perm = np.random.default_rng(0).permutation(7)
    s_a, s_b = state, state
    for g in grads:
        u_a, s_a = rule.update(theta, s_a, g, params)
        u_b, s_b = rule.update(theta, s_b, {"x": g["x"][perm]}, params)
        np.testing.assert_allclose(np.asarray(u_b["x"]), np.asarray(u_a["x"])[perm], rtol=1e-5,
                                   atol=1e-7)
    assert float(jnp.abs(u_a["x"]).max()) > 1e-3
    # Each coordinate's hidden state depends only on its own gradient history.
    single = {"x": jnp.zeros(1)}
    s_one = rule.init(theta, single)
    for g in grads:
        u_one, s_one = rule.update(theta, s_one, {"x": g["x"][2:3]}, single)
    np.testing.assert_allclose(np.asarray(u_one["x"][0]), np.asarray(u_a["x"][2]), rtol=1e-5)


def test_output_scale_multiplies_the_step(rule_and_theta):
    _, theta = rule_and_theta
    params = {"x": jnp.zeros(5)}
    g = _grads(params, jax.random.PRNGKey(9))
    steps = []
    for scale in (0.1, 0.3):
        rule = l2l_lstm(hidden=6, layers=2, output_scale=scale)
        steps.append(rule.update(theta, rule.init(theta, params), g, params)[0]["x"])
    np.testing.assert_allclose(np.asarray(steps[1]), 3 * np.asarray(steps[0]), rtol=1e-5)


def test_bad_hyperparameters_name_the_field():
    with pytest.raises(ValueError, match="hidden"):
        l2l_lstm(hidden=0)
    with pytest.raises(ValueError, match="preprocess_p"):
        l2l_lstm(preprocess_p=-1.0)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=-2.0**60, max_value=2.0**60, allow_nan=False, allow_subnormal=False,
                 width=32),
       st.sampled_from([2.0, 5.0, 10.0]))
def test_preprocessing_is_bounded_sign_preserving_and_continuous_at_the_threshold(g, p):
    a, b = np.asarray(log_sign_preprocess(jnp.asarray(g, jnp.float32), p))
    if abs(g) >= np.exp(-p):
        assert b == np.sign(g) and a >= -1.0 - 1e-6
    else:
        assert a == -1.0 and abs(b) <= 1.0 + 1e-5 and np.sign(b) == np.sign(g)
    # Just above and below the threshold the two branches agree (both give (−1, ±1)).
    for side in (np.exp(-p) * (1 + 1e-6), np.exp(-p) * (1 - 1e-6)):
        np.testing.assert_allclose(log_sign_preprocess(jnp.float32(side), p), [-1.0, 1.0],
                                   atol=1e-4)
