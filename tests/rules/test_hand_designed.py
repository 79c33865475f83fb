"""The seed-002 optimizers: lopt's rules against optax and against the slides' equations."""
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lopt import rules

GRADS = [np.array([0.5, -1.0, 2.0, 1e-3]) * (1 + 0.3 * np.sin(t)) - 0.2 * t / 10
         for t in range(12)]


def _run_rule(rule, grads=GRADS):
    params = {"x": jnp.zeros(4)}
    state = rule.init({}, params)
    out = []
    for g in grads:
        updates, state = rule.update({}, state, {"x": jnp.asarray(g, jnp.float32)}, params, None)
        params = optax.apply_updates(params, updates)
        out.append(np.asarray(params["x"]))
    return np.array(out)


OPTAX_PAIRS = {
    "sgd": (rules.sgd(0.1), optax.sgd(0.1)),
    "momentum": (rules.momentum(0.1, 0.8), optax.sgd(0.1, momentum=0.8)),
    "nesterov": (rules.nesterov(0.1, 0.8), optax.sgd(0.1, momentum=0.8, nesterov=True)),
    "rprop": (rules.rprop(0.1), optax.rprop(0.1)),
    "adagrad": (rules.adagrad(0.1), optax.adagrad(0.1)),
    "rmsprop": (rules.rmsprop(0.01, 0.9), optax.rmsprop(0.01, decay=0.9)),
    "adadelta": (rules.adadelta(1.0, 0.9), optax.adadelta(1.0, rho=0.9)),
    "adam": (rules.adam(0.01), optax.adam(0.01)),
    "adamax": (rules.adamax(0.01), optax.adamax(0.01)),
}


def test_every_seed_002_optimizer_is_registered():
    assert set(OPTAX_PAIRS) == set(rules.HAND_DESIGNED)


@pytest.mark.parametrize("name", sorted(OPTAX_PAIRS))
def test_rule_matches_optax(name):
    rule, tx = OPTAX_PAIRS[name]
    params = {"x": jnp.zeros(4)}
    state = tx.init(params)
    expected = []
    for g in GRADS:
        updates, state = tx.update({"x": jnp.asarray(g, jnp.float32)}, state, params)
        params = optax.apply_updates(params, updates)
        expected.append(np.asarray(params["x"]))
    np.testing.assert_array_equal(_run_rule(rule), np.array(expected))


def _reference(name, lr):
    """The update equations of seed 002, written out in numpy (γ₁, γ₂ are the decay rates)."""
    theta = np.zeros(4)
    v = np.zeros(4)
    r = np.zeros(4)
    p = np.zeros(4)
    out = []
    for t, g in enumerate(GRADS, start=1):
        if name == "sgd":
            v = lr * g
        elif name == "momentum":
            v = lr * g + 0.8 * v
        elif name == "rmsprop":
            r = 0.9 * r + 0.1 * g**2
            v = lr * g / np.sqrt(r + 1e-8)  # optax puts eps inside the root
        elif name == "adam":
            r = 0.9 * r + 0.1 * g
            p = 0.999 * p + 0.001 * g**2
            v = lr * (r / (1 - 0.9**t)) / (np.sqrt(p / (1 - 0.999**t)) + 1e-8)
        elif name == "adamax":
            r = 0.9 * r + 0.1 * g
            p = np.maximum(0.999 * p, np.abs(g))
            v = lr * (r / (1 - 0.9**t)) / (p + 1e-8)
        theta = theta - v
        out.append(theta.copy())
    return np.array(out)


@pytest.mark.parametrize("name,rule", [("sgd", rules.sgd(0.1)), ("momentum", rules.momentum(0.1, 0.8)),
                                       ("rmsprop", rules.rmsprop(0.01, 0.9)),
                                       ("adam", rules.adam(0.01)), ("adamax", rules.adamax(0.01))])
def test_rule_matches_seed_equations(name, rule):
    lr = rule.config["learning_rate"]
    np.testing.assert_allclose(_run_rule(rule), _reference(name, lr), rtol=2e-5, atol=1e-6)


def test_rprop_step_sizes_follow_the_seed_recursion():
    """v_t = η+ v_{t-1} when f'_t f'_{t-1} > 0, η− v_{t-1} when < 0, v_0 = δ (seed 002)."""
    grads = [np.array([1.0]), np.array([1.0]), np.array([1.0]), np.array([-1.0])]
    rule = rules.rprop(0.1, eta_minus=0.5, eta_plus=1.2)
    params = {"x": jnp.zeros(1)}
    state = rule.init({}, params)
    step_sizes, emitted = [], []
    for g in grads:
        updates, state = rule.update({}, state, {"x": jnp.asarray(g, jnp.float32)}, params, None)
        step_sizes.append(float(state[0].step_sizes["x"][0]))
        emitted.append(float(updates["x"][0]))
    np.testing.assert_allclose(step_sizes, [0.1, 0.12, 0.144, 0.072], rtol=1e-6)
    # optax emits each signed step one call late and drops the step on a sign flip (iRprop-).
    np.testing.assert_allclose(emitted, [0.0, -0.1, -0.12, 0.0], rtol=1e-6)
