"""Celo2's harness: scale_by_celo2's sign convention, param_labels' routing, celo2_chain equal to
its parts, Newton–Schulz equal to optax's, and the chain training a flax nnx model."""
import flax.nnx as nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib._muon as optax_muon
import pytest
from sklearn.datasets import load_digits

import lopt
from lopt.rules import celo2, celo2_base
from lopt.rules.celo2 import NS_COEFFS, orthogonalize


def _params(seed=0):
    rng = np.random.default_rng(seed)
    return {"dense": {"kernel": jnp.asarray(rng.standard_normal((6, 4)), jnp.float32),
                      "bias": jnp.zeros((4,))},
            "conv": {"kernel": jnp.asarray(rng.standard_normal((3, 3, 2, 5)), jnp.float32)},
            "embed": {"embedding": jnp.asarray(rng.standard_normal((10, 6)), jnp.float32)},
            "norm": {"scale": jnp.ones((4,))}}


def test_param_labels_route_vectors_and_embeddings_to_adamw():
    labels = lopt.param_labels(_params())
    assert labels == {"dense": {"kernel": "learned", "bias": "adamw"},
                      "conv": {"kernel": "learned"}, "embed": {"embedding": "adamw"},
                      "norm": {"scale": "adamw"}}


@pytest.mark.parametrize("shape", [(6, 4), (4, 9), (2, 3, 5, 4)])
def test_newton_schulz_equals_optax_muons(shape):
    x = jax.random.normal(jax.random.PRNGKey(1), shape)
    ours = orthogonalize(x)
    flat = x.reshape((-1,) + shape[-2:])
    theirs = jax.vmap(lambda m: optax_muon.orthogonalize_via_newton_schulz(
        m, jnp.asarray(NS_COEFFS), 5))(flat).reshape(shape)
    np.testing.assert_allclose(ours, theirs, rtol=2e-5, atol=2e-6)


def test_scale_by_celo2_is_the_step_and_as_optax_adds_minus_step_scale_times_it():
    rule = celo2(step_scale=1e-3)
    theta = rule.init_meta(jax.random.PRNGKey(0))
    params = _params()
    grads = _params(1)
    direction = lopt.scale_by_celo2((rule, theta))
    s, _ = jax.jit(direction.update)(grads, direction.init(params), params)
    tx = lopt.as_optax(rule, theta)
    u, _ = jax.jit(tx.update)(grads, tx.init(params), params)
    for a, b in zip(jax.tree.leaves(s), jax.tree.leaves(u)):
        np.testing.assert_allclose(-1e-3 * a, b, rtol=1e-6)
        # RMS-normalized over the last two axes: RMS 1 per matrix
        assert np.allclose(np.sqrt(np.mean(np.square(a), axis=tuple(range(a.ndim))[-2:])), 1,
                           rtol=1e-3)
    with pytest.raises(ValueError, match="celo2 or celo2_base"):
        lopt.scale_by_celo2((lopt.rules.adafac_mlp(), lopt.rules.adafac_mlp().init_meta(
            jax.random.PRNGKey(0))))


def test_untrained_momentum_init_is_muon_with_rms_normalized_steps():
    rule = celo2(init="momentum")
    theta = rule.init_meta(jax.random.PRNGKey(2))
    params, grads = _params(), _params(3)
    s, _ = jax.jit(lopt.scale_by_celo2((rule, theta)).update)(
        grads, lopt.scale_by_celo2((rule, theta)).init(params), params)
    g = grads["dense"]["kernel"]
    muon = optax_muon.orthogonalize_via_newton_schulz(0.1 * g, jnp.asarray(NS_COEFFS), 5)
    muon = muon / jnp.sqrt(jnp.mean(muon**2) + 1e-9)
    np.testing.assert_allclose(s["dense"]["kernel"], muon, rtol=1e-4, atol=1e-5)
    base = celo2_base(init="momentum")
    s, _ = jax.jit(lopt.scale_by_celo2((base, theta)).update)(
        grads, lopt.scale_by_celo2((base, theta)).init(params), params)
    np.testing.assert_allclose(s["dense"]["kernel"], g / np.sqrt(np.mean(g**2)), rtol=1e-4)


def test_celo2_chain_is_the_learned_step_decayed_and_scaled_and_adamw_on_the_rest():
    rule = celo2()
    theta = rule.init_meta(jax.random.PRNGKey(0))
    params, grads = _params(), _params(4)
    lr, wd = 0.01, 0.1
    chain = lopt.celo2_chain((rule, theta), lr, weight_decay=wd)
    updates, _ = jax.jit(chain.update)(grads, chain.init(params), params)
    s, _ = jax.jit(lopt.scale_by_celo2((rule, theta)).update)(
        grads, lopt.scale_by_celo2((rule, theta)).init(params), params)
    adamw = optax.adamw(20 * lr, b1=0.9, b2=0.95, eps=1e-8, weight_decay=wd)
    labels = lopt.param_labels(params)
    for path, u in jax.tree_util.tree_leaves_with_path(updates):
        keys = [k.key for k in path]
        p, g = params[keys[0]][keys[1]], grads[keys[0]][keys[1]]
        if labels[keys[0]][keys[1]] == "learned":
            expected = -lr * (s[keys[0]][keys[1]] + wd * p)
        else:
            expected, _ = adamw.update(g, adamw.init(p), p)
        np.testing.assert_allclose(u, expected, rtol=1e-5, atol=1e-8, err_msg=str(keys))


class _Net(nnx.Module):
    def __init__(self, rngs):
        self.hidden = nnx.Linear(64, 32, rngs=rngs)
        self.out = nnx.Linear(32, 10, rngs=rngs)

    def __call__(self, x):
        return self.out(jax.nn.relu(self.hidden(x)))


def test_celo2_chain_trains_a_flax_nnx_model():
    """80 steps on sklearn's digits through nnx.Optimizer: the training loss falls by 3x."""
    digits = load_digits()
    x = jnp.asarray(digits.data[:512] / 16.0, jnp.float32)
    y = jnp.asarray(digits.target[:512])
    rule = celo2(init="momentum")
    model = _Net(nnx.Rngs(0))
    params = nnx.as_pure(nnx.state(model, nnx.Param))
    tx = lopt.celo2_chain((rule, rule.init_meta(jax.random.PRNGKey(0))),
                          optax.cosine_decay_schedule(0.02, 80), weight_decay=1e-4,
                          labels=lambda p: lopt.param_labels(p))
    assert lopt.param_labels(params)["hidden"] == {"bias": "adamw", "kernel": "learned"}
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)

    def loss_fn(model):
        return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

    @nnx.jit
    def step(model, optimizer):
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        optimizer.update(model, grads)
        return loss

    first = float(step(model, optimizer))
    for _ in range(79):
        last = float(step(model, optimizer))
    assert np.isfinite(last) and last < first / 3, (first, last)


@pytest.fixture(scope="module")
def small_velo():
    rule = lopt.rules.velo(lstm_hidden=16, param_inits=4)
    return rule, rule.init_meta(jax.random.PRNGKey(5))


def test_velo_chain_weight_decay_is_the_prefabs_l2_term(small_velo):
    params, grads = _params(), _params(6)
    wd = 0.01
    chain = lopt.velo_chain(small_velo, num_steps=10, weight_decay=wd)
    updates, _ = jax.jit(chain.update)(grads, chain.init(params), params, value=2.0)
    plain = lopt.as_optax(*small_velo, num_steps=10)
    decayed = jax.tree.map(lambda g, p: g + wd * p, grads, params)
    l2 = sum(float(jnp.sum(p**2)) for p in jax.tree.leaves(params))
    expected, _ = jax.jit(plain.update)(decayed, plain.init(params), params, value=2.0 + wd * l2)
    for a, b in zip(jax.tree.leaves(updates), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_velo_chain_accumulates_gradients_past_its_trained_horizon(small_velo):
    """num_steps 8 over a horizon of 4: the rule sees 4 steps, each the mean of 2 gradients."""
    params, g1, g2 = _params(), _params(7), _params(8)
    chain = lopt.velo_chain(small_velo, num_steps=8, max_training_steps=4)
    state = chain.init(params)
    first, state = jax.jit(chain.update)(g1, state, params, value=1.0)
    assert all(float(jnp.max(jnp.abs(u))) == 0 for u in jax.tree.leaves(first))
    second, _ = jax.jit(chain.update)(g2, state, params, value=1.0)
    plain = lopt.as_optax(*small_velo, num_steps=4)
    mean = jax.tree.map(lambda a, b: (a + b) / 2, g1, g2)
    expected, _ = jax.jit(plain.update)(mean, plain.init(params), params, value=1.0)
    for a, b in zip(jax.tree.leaves(second), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-9)
    with pytest.raises(ValueError, match="num_steps"):
        lopt.velo_chain(small_velo, num_steps=0)


def test_mup_lr_multipliers_are_mulos_one_over_fan_in_for_hidden_matrices():
    """μLO's MuMLP: hidden weights hidden_lr_mult / fan-in; input and output layers, biases 1."""
    def mlp(width):
        return {"linear_0": {"w": jnp.zeros((64, width)), "b": jnp.zeros((width,))},
                "linear_1": {"w": jnp.zeros((width, width)), "b": jnp.zeros((width,))},
                "linear_2": {"w": jnp.zeros((width, 10)), "b": jnp.zeros((10,))}}

    got = lopt.mup.mup_lr_multipliers(mlp(128), mlp(32), hidden_lr_mult=2.0)
    assert got == {"linear_0": {"w": 1.0, "b": 1.0}, "linear_1": {"w": 2.0 / 128, "b": 1.0},
                   "linear_2": {"w": 1.0, "b": 1.0}}


def test_mulo_chain_is_the_rule_on_finite_gradients_scaled_per_tensor():
    rule = lopt.rules.adafac_mlp()
    theta = rule.init_meta(jax.random.PRNGKey(0))
    params, grads = _params(), _params(9)
    multipliers = jax.tree.map(lambda _: 0.25, params)
    multipliers["dense"]["kernel"] = 1 / 6
    bad = jax.tree.map(lambda g: g.at[(0,) * g.ndim].set(jnp.nan), grads)
    chain = lopt.mup.mulo_chain((rule, theta), multipliers)
    updates, _ = jax.jit(chain.update)(bad, chain.init(params), params)
    plain = lopt.as_optax(rule, theta)
    cleaned = jax.tree.map(lambda g: g.at[(0,) * g.ndim].set(0.0), grads)
    expected, _ = jax.jit(plain.update)(cleaned, plain.init(params), params)
    for u, e, m in zip(jax.tree.leaves(updates), jax.tree.leaves(expected),
                       jax.tree.leaves(multipliers)):
        np.testing.assert_allclose(u, m * e, rtol=1e-6)
