"""The seed-002 optimizers: lopt's rules against optax and against the slides' equations."""
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib
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
    "adagrad": (rules.adagrad(0.1), optax.adagrad(0.1, initial_accumulator_value=0.0)),
    "rmsprop": (rules.rmsprop(0.01, 0.9), optax.rmsprop(0.01, decay=0.9)),
    "adadelta": (rules.adadelta(1.0, 0.9), optax.adadelta(1.0, rho=0.9)),
    "adam": (rules.adam(0.01), optax.adam(0.01)),
    "adamax": (rules.adamax(0.01), optax.adamax(0.01)),
}


def test_every_seed_002_optimizer_is_registered():
    # rprop is the seed's own recursion, not optax's (test_rprop_* below).
    assert set(OPTAX_PAIRS) | {"rprop"} == set(rules.HAND_DESIGNED)


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
    """The update equations of Misra, written out in numpy (γ₁, γ₂ are the decay rates)."""
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
        elif name == "adagrad":
            r = r + g**2                     # r_0 = 0, as the seed writes it
            v = lr * g / np.sqrt(r + 1e-7)   # optax's ε inside the root
        elif name == "adadelta":
            # Zeiler's ε in both roots; p lags one step ("why do updates have a time delay?").
            r = 0.9 * r + 0.1 * g**2
            v = lr * np.sqrt(p + 1e-6) / np.sqrt(r + 1e-6) * g
            p = 0.9 * p + 0.1 * v**2
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


@pytest.mark.parametrize("name,rule", [("sgd", rules.sgd(0.1)),
                                       ("momentum", rules.momentum(0.1, 0.8)),
                                       ("adagrad", rules.adagrad(0.1)),
                                       ("adadelta", rules.adadelta(1.0, 0.9)),
                                       ("rmsprop", rules.rmsprop(0.01, 0.9)),
                                       ("adam", rules.adam(0.01)), ("adamax", rules.adamax(0.01))])
def test_rule_matches_seed_equations(name, rule):
    lr = rule.config["learning_rate"]
    np.testing.assert_allclose(_run_rule(rule), _reference(name, lr), rtol=2e-5, atol=1e-6)


def test_rprop_follows_the_seed_recursion_without_lag():
    """v_t = η+ v_{t-1} when f'_t f'_{t-1} > 0, η− v_{t-1} when < 0, v_0 = δ; the step is
    −sgn(f'_t) v_t at once (Misra)."""
    grads = [np.array([1.0, 0.0]), np.array([1.0, -2.0]), np.array([1.0, -1.0]),
             np.array([-1.0, 3.0]), np.array([0.0, 1.0])]
    rule = rules.rprop(0.1, eta_minus=0.5, eta_plus=1.2)
    params = {"x": jnp.zeros(2)}
    state = rule.init({}, params)
    emitted = []
    for g in grads:
        updates, state = rule.update({}, state, {"x": jnp.asarray(g, jnp.float32)}, params, None)
        emitted.append(np.asarray(updates["x"]))
    v, prev, expected = np.full(2, 0.1), np.zeros(2), []
    for g in grads:
        v = np.where(g * prev > 0, 1.2 * v, np.where(g * prev < 0, 0.5 * v, v))
        expected.append(-np.sign(g) * v)
        prev = g
    np.testing.assert_allclose(emitted, expected, rtol=1e-6)
    # By hand for the first coordinate: sizes 0.1, 0.12, 0.144, 0.072, 0.072.
    np.testing.assert_allclose([e[0] for e in emitted], [-0.1, -0.12, -0.144, 0.072, 0.0],
                               rtol=1e-6)


def test_nesterov_is_the_seed_recursion_at_the_look_ahead_point():
    """Misra's NAG on f(θ) = ½ θᵀAθ − bᵀθ: θ_{t+½} = θ_t − μ v_t, v_{t+1} = μ v_t +
    α f'(θ_{t+½}), θ_{t+1} = θ_t − v_{t+1}. The rule sees f' at the parameters it holds, so
    they must be the look-ahead points θ_t − μ v_t."""
    a = np.array([[2.0, 0.3], [0.3, 0.5]])
    b = np.array([1.0, -1.0])
    lr, mu = 0.1, 0.8
    theta, v, expected = np.array([1.0, 2.0]), np.zeros(2), []
    for _ in range(10):
        half = theta - mu * v
        v = mu * v + lr * (a @ half - b)
        theta = theta - v
        expected.append(theta - mu * v)
    rule = rules.nesterov(lr, mu)
    params = {"x": jnp.asarray([1.0, 2.0])}
    state = rule.init({}, params)
    got = []
    for _ in range(10):
        g = {"x": jnp.asarray(a, jnp.float32) @ params["x"] - jnp.asarray(b, jnp.float32)}
        updates, state = rule.update({}, state, g, params, None)
        params = optax.apply_updates(params, updates)
        got.append(np.asarray(params["x"]))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def _matrix_trajectory(rule_or_tx, is_rule):
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}
    state = rule_or_tx.init({}, params) if is_rule else rule_or_tx.init(params)
    rng = np.random.default_rng(0)
    out = []
    for _ in range(6):
        g = {"w": jnp.asarray(rng.normal(size=(3, 2)), jnp.float32),
             "b": jnp.asarray(rng.normal(size=2), jnp.float32)}
        if is_rule:
            updates, state = rule_or_tx.update({}, state, g, params, None)
        else:
            updates, state = rule_or_tx.update(g, state, params)
        params = optax.apply_updates(params, updates)
        out.append(np.concatenate([np.ravel(params["w"]), np.ravel(params["b"])]))
    return np.array(out)


@pytest.mark.parametrize("name,tx", [
    ("adamw", optax.adamw(0.01, weight_decay=1e-4)),
    ("nadamw", optax.nadamw(0.01, weight_decay=1e-4)),
    ("lion", optax.lion(0.01, weight_decay=1e-3)),
    ("muon", optax.contrib.muon(0.01)),
])
def test_modern_baselines_are_optax_itself(name, tx):
    import optax.contrib  # noqa: F401

    rule = rules.make_rule(name, learning_rate=0.01)
    np.testing.assert_array_equal(_matrix_trajectory(rule, True), _matrix_trajectory(tx, False))
    assert name in rules.BASELINES
