import re

import flax.nnx as nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lopt
from lopt.rules import UpdateRule, adam, l2l_lstm
from lopt.tasks import mlp_classifier


@pytest.fixture(scope="module")
def digits_task():
    return mlp_classifier(hidden=(16,), activation="relu", batch_size=32)


def test_adam_through_lopt_equals_optax_adam_over_50_steps(digits_task):
    params = digits_task.init(jax.random.PRNGKey(0))
    ours, ref = lopt.as_optax(adam(3e-3)), optax.adam(3e-3)
    p_ours, p_ref = params, params
    s_ours, s_ref = ours.init(params), ref.init(params)
    grad = jax.jit(jax.value_and_grad(digits_task.loss))
    for t in range(50):
        key = jax.random.PRNGKey(t)
        loss_o, g_o = grad(p_ours, key)
        _, g_r = grad(p_ref, key)
        u_o, s_ours = ours.update(g_o, s_ours, p_ours, value=loss_o)
        u_r, s_ref = ref.update(g_r, s_ref, p_ref)
        p_ours, p_ref = optax.apply_updates(p_ours, u_o), optax.apply_updates(p_ref, u_r)
        for a, b in zip(jax.tree.leaves(p_ours), jax.tree.leaves(p_ref)):
            np.testing.assert_allclose(a, b, atol=1e-7, rtol=0)


def _loss_scaled_sgd() -> UpdateRule:
    """A rule that needs the loss: update = −0.1 · loss · g (checks the value= plumbing)."""
    return UpdateRule(init_meta=lambda key: {}, init=lambda theta, params: {},
                      update=lambda theta, state, grads, params, loss: (
                          jax.tree.map(lambda g: -0.1 * loss * g, grads), state),
                      name="loss_scaled_sgd")


def test_learned_rule_inside_optax_chain_under_jit():
    rule = l2l_lstm(hidden=4, layers=2)
    theta = rule.init_meta(jax.random.PRNGKey(0))
    tx = optax.chain(optax.clip_by_global_norm(0.5), lopt.as_optax(rule, theta),
                     lopt.as_optax(_loss_scaled_sgd()))
    params = {"w": jnp.arange(6.0).reshape(2, 3), "b": jnp.ones(3)}
    grads = jax.tree.map(lambda p: 3.0 * jnp.cos(p), params)

    @jax.jit
    def step(state, value):
        return tx.update(grads, state, params, value=value)

    updates, state = step(tx.init(params), 2.0)
    clipped, _ = optax.clip_by_global_norm(0.5).update(grads, optax.EmptyState())
    expected, _ = rule.update(theta, rule.init(theta, params), clipped, params)
    expected = jax.tree.map(lambda u: -0.1 * 2.0 * u, expected)
    for a, b in zip(jax.tree.leaves(updates), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)
    assert jax.tree.structure(state[1]) == jax.tree.structure(rule.init(theta, params))


def test_learned_rule_needs_theta():
    with pytest.raises(ValueError, match="theta"):
        lopt.as_optax(l2l_lstm())


class _Net(nnx.Module):
    def __init__(self, rngs):
        self.hidden = nnx.Linear(64, 32, rngs=rngs)
        self.out = nnx.Linear(32, 10, rngs=rngs)

    def __call__(self, x):
        return self.out(jax.nn.relu(self.hidden(x.reshape(x.shape[0], -1))))


def _train_nnx(tx, steps=60):
    from lopt.tasks.datasets import digits

    data = digits()
    model = _Net(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

    def loss_fn(model, x, y):
        return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

    @nnx.jit
    def train_step(model, optimizer, x, y):
        loss, grads = nnx.value_and_grad(loss_fn)(model, x, y)
        optimizer.update(model, grads, value=loss)
        return loss

    losses = []
    for t in range(steps):
        idx = jax.random.randint(jax.random.PRNGKey(t), (64,), 0, data.train_x.shape[0])
        losses.append(float(train_step(model, optimizer, data.train_x[idx], data.train_y[idx])))
    test_loss = float(loss_fn(model, data.test_x, data.test_y))
    return losses, test_loss, nnx.state(model, nnx.Param)


def test_flax_nnx_training_loop_with_lopt_optimizer():
    losses, test_loss, params = _train_nnx(lopt.as_optax(adam(1e-2)))
    ref_losses, _, ref_params = _train_nnx(optax.adam(1e-2))
    assert test_loss < 0.5 < np.log(10) - 1.0 < losses[0]
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(ref_params)):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_bad_rule_or_theta_is_refused_at_construction():
    with pytest.raises(TypeError, match="rule must be an UpdateRule.*got NoneType"):
        lopt.as_optax(None)
    with pytest.raises(TypeError, match="got int 3"):
        lopt.as_optax(3)
    rule = lopt.rules.l2l_lstm(hidden=4, layers=1)
    theta = rule.init_meta(jax.random.PRNGKey(0))
    wrong = jax.tree.map(lambda x: x, theta)
    wrong["cells"][0]["w"] = jnp.zeros((3, 3))
    with pytest.raises(ValueError, match=r"\['cells'\]\[0\]\['w'\] has shape \(3, 3\)"):
        lopt.as_optax(rule, wrong)
    with pytest.raises(ValueError, match="structure differs"):
        lopt.as_optax(rule, {"x": jnp.zeros(2)})
    with pytest.raises(ValueError, match="num_steps must be a positive integer"):
        lopt.as_optax("celo_tiny", num_steps=0)


@pytest.mark.parametrize("name,kw", [("l2l_lstm_mnist", {}), ("celo_tiny", {"num_steps": 20})])
def test_integer_and_boolean_leaves_are_left_alone(name, kw):
    """Zero updates of the leaf's own dtype (so apply_updates keeps it), no state for them,
    and the float leaves updated exactly as if the others were not there."""
    tx = lopt.as_optax(name, **kw)
    floats = {"w": jnp.linspace(-1, 1, 6).reshape(3, 2), "b": jnp.ones(2)}
    params = {**floats, "count": jnp.array(7, jnp.int32), "mask": jnp.array([True, False])}
    grads = {"w": jnp.linspace(0.5, -0.2, 6).reshape(3, 2), "b": jnp.array([0.1, -0.3]),
             "count": jnp.array(0, jnp.int32), "mask": jnp.array([False, False])}
    state, alone = tx.init(params), tx.init(floats)
    step = jax.jit(lambda g, s, p: tx.update(g, s, p, value=jnp.float32(1.5)))
    for _ in range(3):
        updates, state = step(grads, state, params)
        ref, alone = step({k: grads[k] for k in floats}, alone, floats)
        for k in floats:
            np.testing.assert_array_equal(updates[k], ref[k])
        assert updates["count"].dtype == jnp.int32 and int(updates["count"]) == 0
        assert updates["mask"].dtype == jnp.bool_ and not updates["mask"].any()
        new = optax.apply_updates(params, updates)
        assert new["count"].dtype == jnp.int32 and int(new["count"]) == 7
    assert {np.dtype(x.dtype) for x in jax.tree.leaves(state)} <= \
        {np.dtype(x.dtype) for x in jax.tree.leaves(alone)}


@pytest.mark.parametrize("name", ["celo", "velo", "celo2", "adafac_mlp", "celo_tiny"])
def test_empty_leaves_get_empty_updates_and_leave_the_others_as_if_absent(name):
    """A zero-size leaf ((0,) or (3, 0)) has nothing to update; before, its NaN per-tensor
    statistics reached every other leaf through the rules' cross-tensor features (issue 26)."""
    if name in lopt.rules.LEARNED:
        rule = lopt.rules.make_rule(name)
        tx = lopt.as_optax(rule, rule.init_meta(jax.random.PRNGKey(0)), num_steps=20)
    else:
        tx = lopt.as_optax(name, num_steps=20)
    floats = {"w": jnp.linspace(-1, 1, 6).reshape(3, 2), "b": jnp.ones(2)}
    params = {**floats, "empty": jnp.zeros((0,)), "no_cols": jnp.zeros((3, 0))}
    grads = {"w": jnp.linspace(0.5, -0.2, 6).reshape(3, 2), "b": jnp.array([0.1, -0.3]),
             "empty": jnp.zeros((0,)), "no_cols": jnp.zeros((3, 0))}
    state, alone = tx.init(params), tx.init(floats)
    for _ in range(2):
        updates, state = tx.update(grads, state, params, value=jnp.float32(1.5))
        ref, alone = tx.update({k: grads[k] for k in floats}, alone, floats,
                               value=jnp.float32(1.5))
        for k in floats:
            assert np.all(np.isfinite(updates[k]))
            np.testing.assert_array_equal(updates[k], ref[k])
        assert updates["empty"].shape == (0,) and updates["no_cols"].shape == (3, 0)


def test_apply_if_finite_skips_a_nan_gradient_and_training_goes_on():
    """Unwrapped, one NaN gradient poisons the rule's state for good (as with optax.adam);
    through optax.apply_if_finite that step leaves parameters and state alone, so the run
    equals one that never saw the bad gradient."""
    def run(tx, bad_step):
        params = {"w": jnp.linspace(-1, 1, 6).reshape(3, 2)}
        state = tx.init(params)
        for step in range(4):
            if step == bad_step:
                grads = {"w": jnp.full((3, 2), jnp.nan)}
            else:
                grads = {"w": params["w"] * 0.5 + 0.1}
            updates, state = tx.update(grads, state, params, value=jnp.float32(1.0))
            params = optax.apply_updates(params, updates)
        return params["w"]

    plain = lopt.as_optax("l2l_lstm_mnist")
    assert not np.any(np.isfinite(run(plain, bad_step=1)))
    guarded = optax.apply_if_finite(lopt.as_optax("l2l_lstm_mnist"), max_consecutive_errors=3)
    skipped = run(guarded, bad_step=1)

    # The reference: the same three good gradients, no bad one.
    def clean():
        tx = lopt.as_optax("l2l_lstm_mnist")
        params = {"w": jnp.linspace(-1, 1, 6).reshape(3, 2)}
        state = tx.init(params)
        for _ in range(3):
            updates, state = tx.update({"w": params["w"] * 0.5 + 0.1}, state, params)
            params = optax.apply_updates(params, updates)
        return params["w"]

    np.testing.assert_allclose(skipped, clean(), rtol=1e-6)


ODD_TREES = {  # issue 37, item 7: (params, grads or None for params, error type, what is said)
    "a Python float leaf": ({"w": jnp.ones((3, 4)), "a": 1.0}, None, TypeError,
                            "params['a'] is a Python float: every leaf must be an array"),
    "a gradient of the wrong shape": ({"w": jnp.ones((3, 4))}, {"w": jnp.ones((4,))},
                                      ValueError, "grads['w'] has shape (4,), params['w'] "
                                                  "has (3, 4)"),
    "grads of another structure": ({"w": jnp.ones((3, 4))}, {"v": jnp.ones((3, 4))},
                                   ValueError, "grads and params must have the same structure"),
    "a complex leaf": ({"w": jnp.ones((3, 4)), "c": jnp.ones(3, jnp.complex64)}, None,
                       TypeError, "params['c'] is complex64: a learned rule updates real"),
}


@pytest.mark.parametrize("case", sorted(ODD_TREES))
@pytest.mark.parametrize("name", sorted(lopt.pretrained.PRETRAINED))
def test_odd_pytrees_are_one_error_naming_the_leaf(name, case):
    params, grads, kind, said = ODD_TREES[case]
    tx = lopt.as_optax(name, num_steps=10)
    with pytest.raises(kind, match=re.escape(said)):
        state = tx.init(params)
        tx.update(params if grads is None else grads, state, params, value=jnp.float32(1.0))


@pytest.mark.parametrize("name", sorted(lopt.pretrained.PRETRAINED))
def test_trees_without_a_float_leaf_get_zero_updates(name):
    """An empty tree, or one of integer and boolean leaves only: nothing to update, as with
    optax (celo_tiny stacked no features and celo_released reduced an empty array)."""
    tx = lopt.as_optax(name, num_steps=10)
    for params in ({}, {"n": jnp.int32(3), "b": jnp.array([True, False])}):
        state = tx.init(params)
        updates, _ = tx.update(params, state, params, value=jnp.float32(1.0))
        assert jax.tree.structure(updates) == jax.tree.structure(params)
        for u, p in zip(jax.tree.leaves(updates), jax.tree.leaves(params)):
            assert u.dtype == p.dtype and not np.any(np.asarray(u))
