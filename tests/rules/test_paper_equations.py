"""Every learned rule, three steps at a fixed theta, against its paper's equations in numpy.

Each reference below is written from the seed's (or paper's) equations in plain float64 numpy,
one coordinate at a time, sharing nothing with lopt but theta's numbers. theta is the rule's
initialization plus fixed noise, so that every weight, including those initialized at zero,
matters. Three steps with changing gradients make the state (moments, bias corrections,
recurrent state, histories) matter; removing a bias correction or a normalization fails them.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lopt.rules import (
    hierarchical,
    hyperadam,
    l2l_lstm,
    multiscale_adam,
    normalized_history,
    per_parameter_mlp,
    rnnprop,
)

STEPS = 3


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def elu(x):
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


def lstm(cell, x, h, c):
    """Hochreiter & Schmidhuber's LSTM step, gates input, forget, cell, output."""
    z = np.concatenate([x, h]) @ cell["w"] + cell["b"]
    i, f, g, o = np.split(z, 4)
    c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    return sigmoid(o) * np.tanh(c), c


def lstm_stack(cells, x, hs, cs):
    hs, cs = hs.copy(), cs.copy()
    for layer, cell in enumerate(cells):
        hs[layer], cs[layer] = lstm(cell, x, hs[layer], cs[layer])
        x = hs[layer]
    return x, hs, cs


def dense(layer, x):
    return x @ layer["w"] + layer["b"]


def noisy_theta(rule, scale=0.3):
    """The rule's init plus fixed N(0, scale²) noise, as float32 arrays (for lopt) and float64
    numpy (for the reference)."""
    theta = rule.init_meta(jax.random.PRNGKey(0))
    leaves, treedef = jax.tree.flatten(theta)
    rng = np.random.default_rng(1)
    leaves = [np.asarray(x, np.float64) + scale * rng.standard_normal(np.shape(x))
              for x in leaves]
    as_np = jax.tree.unflatten(treedef, leaves)
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), as_np), as_np


PARAMS = {"b": np.array([0.0, 0.0, 0.0]), "w": np.array([[0.5, -1.0, 2.0], [0.1, -0.3, 0.7]])}
GRADS = [{"b": np.array([0.3, -0.02, 1.5]), "w": np.array([[1.0, -2.0, 0.5], [-0.1, 0.4, 3.0]])},
         {"b": np.array([0.2, 0.05, -0.5]), "w": np.array([[0.8, 1.0, 0.1], [-0.3, 0.2, 2.0]])},
         {"b": np.array([-0.4, 0.01, 0.7]), "w": np.array([[1.2, -0.5, -0.2], [0.1, 0.6, 1.0]])}]
LOSSES = [2.0, 1.5, 1.2]


def run_lopt(rule, theta, losses=LOSSES):
    """Three steps of the rule, params moving by its updates; returns each step's updates."""
    params = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), PARAMS)
    state = rule.init(theta, params)
    out = []
    for g, loss in zip(GRADS, losses):
        g = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), g)
        updates, state = rule.update(theta, state, g, params, loss)
        params = jax.tree.map(lambda p, u: p + u, params, updates)
        out.append({k: np.asarray(v, np.float64) for k, v in updates.items()})
    return out


def run_reference(step_fn, init_fn):
    """Drive a numpy reference ``step_fn(t, leaf_name, p, g, state) -> (update, state)``."""
    params = {k: v.copy() for k, v in PARAMS.items()}
    states = {k: init_fn(v) for k, v in params.items()}
    out = []
    for t, g in enumerate(GRADS, start=1):
        step = {}
        for name in params:
            step[name], states[name] = step_fn(t, name, params[name], g[name], states[name])
        for name in params:
            params[name] = params[name] + step[name]
        out.append(step)
    return out


def assert_close(got, expected, rtol=2e-4, atol=1e-7):
    for t, (a, b) in enumerate(zip(got, expected)):
        for name in b:
            np.testing.assert_allclose(a[name], b[name], rtol=rtol, atol=atol,
                                       err_msg=f"step {t + 1}, leaf {name}")
    assert max(np.abs(b[n]).max() for b in expected for n in b) > 1e-4  # non-trivial steps


def per_coordinate_reference(coordinate_step, init_coordinate):
    """A reference over every coordinate of a leaf, one coordinate at a time."""

    def init(p):
        return [init_coordinate(x) for x in p.ravel()]

    def step(t, name, p, g, states):
        outs = [coordinate_step(t, pi, gi, si) for pi, gi, si in zip(p.ravel(), g.ravel(), states)]
        return np.array([o[0] for o in outs]).reshape(p.shape), [o[1] for o in outs]

    return step, init


# ---- L2L (Andrychowicz et al. 2016): log/sign preprocessing, 2-layer LSTM, linear read-out × 0.1

def test_l2l_lstm_matches_seed_001():
    rule = l2l_lstm(hidden=4, layers=2)
    theta, th = noisy_theta(rule)
    p_const = 10.0

    def coordinate(t, p, g, s):
        if abs(g) >= np.exp(-p_const):
            x = np.array([np.log(abs(g)) / p_const, np.sign(g)])
        else:
            x = np.array([-1.0, np.exp(p_const) * g])
        out, h, c = lstm_stack(th["cells"], x, *s)
        return 0.1 * dense(th["out"], out)[0], (h, c)

    ref = run_reference(*per_coordinate_reference(
        coordinate, lambda _: (np.zeros((2, 4)), np.zeros((2, 4)))))
    assert_close(run_lopt(rule, theta), ref)


# ---- RNNprop (Lv et al. 2017): bias-corrected g/√v̂, m̂/√v̂; ELU 20; LSTM; 0.1·tanh ---------

def test_rnnprop_matches_lv_et_al():
    rule = rnnprop(hidden=5, layers=2, beta1=0.95, beta2=0.95)
    theta, th = noisy_theta(rule)

    def coordinate(t, p, g, s):
        m, v, h, c = s
        m = 0.95 * m + 0.05 * g
        v = 0.95 * v + 0.05 * g**2
        root = np.sqrt(v / (1 - 0.95**t)) + 1e-8
        x = elu(dense(th["input"], np.array([g / root, m / (1 - 0.95**t) / root])))
        out, h, c = lstm_stack(th["cells"], x, h, c)
        return 0.1 * np.tanh(dense(th["out"], out)[0]), (m, v, h, c)

    ref = run_reference(*per_coordinate_reference(
        coordinate, lambda _: (0.0, 0.0, np.zeros((2, 5)), np.zeros((2, 5)))))
    assert_close(run_lopt(rule, theta), ref)


# ---- Per-parameter MLP (Metz et al. 2019) -----------------------------------------

DECAYS = (0.5, 0.9, 0.99)
TIME_SCALES = np.array([1, 3, 10, 30, 100, 300, 1000, 3000, 10000], np.float64)


def metz_features(t, p, g, m, v):
    """[g, p, m_i, g/√v̂, m_i/√v̂] per coordinate, each divided by its RMS over the tensor."""
    rs = 1 / np.sqrt(v / (1 - 0.999**t) + 1e-8)
    cols = [g, p] + [m[..., i] for i in range(len(DECAYS))]
    cols += [g * rs] + [m[..., i] * rs for i in range(len(DECAYS))]
    x = np.stack([c.ravel() for c in cols], axis=-1)
    return x / np.sqrt(np.mean(x**2, axis=0) + 1e-12)


def metz_moments(g, s):
    d = np.array(DECAYS)
    return d * s["m"] + (1 - d) * g[..., None], 0.999 * s["v"] + 0.001 * g**2


def metz_init(p):
    return {"m": np.zeros(p.shape + (len(DECAYS),)), "v": np.zeros(p.shape)}


def metz_mlp(th, x, alpha, beta):
    """d · exp(m · α) · β from a ReLU hidden layer."""
    d, mag = dense(th["out"], np.maximum(dense(th["hidden"], x), 0))
    return d * np.exp(mag * alpha) * beta


def test_per_parameter_mlp_matches_metz_et_al():
    rule = per_parameter_mlp(hidden=6, decays=DECAYS, exp_scale=0.5, step_scale=0.05)
    theta, th = noisy_theta(rule)

    def step(t, name, p, g, s):
        m, v = metz_moments(g, s)
        feats = metz_features(t, p, g, m, v)
        ctx = np.tanh(t / TIME_SCALES)
        u = np.array([metz_mlp(th, np.concatenate([f, ctx]), 0.5, 0.05) for f in feats])
        return u.reshape(p.shape), {"m": m, "v": v}

    assert_close(run_lopt(rule, theta), run_reference(step, metz_init))


def test_hierarchical_matches_its_tensor_and_parameter_equations():
    """Per tensor: an LSTM on [lm(rms g), lm(rms p), lm(rms m_i), lm(|L|), Δlm(|L|), gap,
    has_validation, tanh(t/τ)] with lm(x) = clip(log(x + 1e-10), −10, 10)/10; its read-out is the
    context appended to every coordinate's per-parameter MLP input."""
    rule = hierarchical(hidden=6, tensor_hidden=4, context=3, decays=DECAYS, exp_scale=0.5,
                        step_scale=0.05)
    theta, th = noisy_theta(rule)
    lm = lambda x: np.clip(np.log(x + 1e-10), -10, 10) / 10
    rms = lambda x: np.sqrt(np.mean(x**2))
    losses = [{"train": item, "valid": 1.3 * item} for item in LOSSES]

    def step(t, name, p, g, s):
        m, v = metz_moments(g, s)
        log_loss = lm(losses[t - 1]["train"])
        change = log_loss - lm(losses[t - 2]["train"]) if t > 1 else 0.0
        gap = lm(losses[t - 1]["valid"]) - log_loss
        ctx_t = np.tanh(t / TIME_SCALES)
        x = np.concatenate([[lm(rms(g)), lm(rms(p))] + [lm(rms(m[..., i]))
                                                        for i in range(len(DECAYS))]
                            + [log_loss, change, gap, 1.0], ctx_t])
        h, c = lstm(th["tensor_lstm"], x, s["h"], s["c"])
        context = dense(th["context"], h)
        feats = metz_features(t, p, g, m, v)
        u = np.array([metz_mlp(th, np.concatenate([f, ctx_t, context]), 0.5, 0.05)
                      for f in feats])
        return u.reshape(p.shape), {"m": m, "v": v, "h": h, "c": c}

    def init(p):
        return dict(metz_init(p), h=np.zeros(4), c=np.zeros(4))

    got = run_lopt(rule, theta, losses=[{k: jnp.asarray(v, jnp.float32) for k, v in item.items()}
                                        for item in losses])
    assert_close(got, run_reference(step, init))


# ---- Multiscale Adam (Shahid 2017): MLP and RNN kinds ----------------------------

BETAS = (0.99, 0.9, 0.5)


def adam_steps_reference(t, g, m, v):
    """Adam_β for every β: m_j ← β_j m_j + (1 − β_j) g, v ← β₂ v + (1 − β₂) g², m̂_j/(√v̂ + ε)."""
    b = np.array(BETAS)
    m = b * m + (1 - b) * g
    v = 0.999 * v + 0.001 * g**2
    return m, v, (m / (1 - b**t)) / (np.sqrt(v / (1 - 0.999**t)) + 1e-8)


@pytest.mark.parametrize("kind", ["mlp", "rnn_a", "rnn_b"])
def test_multiscale_adam_networks_match_seed_000(kind):
    layers = {"mlp": 0, "rnn_a": 1, "rnn_b": 2}[kind]
    rule = multiscale_adam(kind, betas=BETAS, hidden=5, learning_rate=0.1)
    theta, th = noisy_theta(rule)

    def coordinate(t, p, g, s):
        m, v, h, c = s
        m, v, steps = adam_steps_reference(t, g, m, v)
        if kind == "mlp":
            w = dense(th["out"], np.tanh(dense(th["hidden"], steps)))
        else:
            out, h, c = lstm_stack(th["cells"], steps, h, c)
            w = dense(th["out"], out)
        return -0.1 * np.sum(w * steps), (m, v, h, c)

    ref = run_reference(*per_coordinate_reference(
        coordinate, lambda _: (np.zeros(3), 0.0, np.zeros((layers, 5)), np.zeros((layers, 5)))))
    assert_close(run_lopt(rule, theta), ref)


@pytest.mark.parametrize("kind", ["lwa_a", "lwa_b", "lwa_c"])
def test_lwa_weights_match_their_constraints(kind):
    """LWA_a: w = a − mean(a) + 1/k sums to one (any sign); LWA_b: softmax; LWA_c: w = a."""
    rule = multiscale_adam(kind, betas=BETAS, learning_rate=0.1)
    a = np.array([0.7, -0.4, 0.2])
    w = {"lwa_a": a - a.mean() + 1 / 3, "lwa_b": np.exp(a) / np.exp(a).sum(), "lwa_c": a}[kind]

    def coordinate(t, p, g, s):
        m, v = s
        m, v, steps = adam_steps_reference(t, g, m, v)
        return -0.1 * np.sum(w * steps), (m, v)

    ref = run_reference(*per_coordinate_reference(coordinate, lambda _: (np.zeros(3), 0.0)))
    assert_close(run_lopt(rule, {"a": jnp.asarray(a, jnp.float32)}), ref)


# ---- Normalized history (Shahid 2017) --------------------------------------------

@pytest.mark.parametrize("variant", ["timesteps", "momentums"])
def test_normalized_history_matches_seed_000(variant):
    k, eta_min, betas = 3, 0.01, np.array([0.0, 0.5, 0.9])
    rule = normalized_history(k=k, variant=variant, hidden=5, eta_min=eta_min, betas=betas)
    theta, th = noisy_theta(rule)

    def coordinate(t, x, g, s):
        x_hist, g_hist = s
        if variant == "timesteps":
            g_hist = np.append(g_hist[1:], g)           # the last k gradients
        else:
            g_hist = betas * g_hist + (1 - betas) * g   # k momentums
        inputs = g_hist / (np.max(np.abs(g_hist)) + 1e-30)  # each in [−1, 1]
        delta = np.tanh(dense(th["out"], np.tanh(dense(th["hidden"], inputs)))[0])
        x_hist = np.append(x_hist[1:], x)               # the last k iterates
        x_max, x_min = x_hist.max(), x_hist.min()
        x_ref = (x_max + x_min) / 2 if variant == "timesteps" else x
        new_x = x_ref + delta * ((x_max - x_min) + eta_min)
        return new_x - x, (x_hist, g_hist)

    ref = run_reference(*per_coordinate_reference(
        coordinate, lambda x: (np.full(k, x), np.zeros(k))))
    assert_close(run_lopt(rule, theta), ref)


# ---- HyperAdam (Wang, Sun & Xu 2019, Algorithm 2) ----------------------------------------------

def test_hyperadam_matches_algorithm_2():
    J, hidden, lr, eps, nd = 3, 4, 0.05, 1e-24, 0.95
    rule = hyperadam(num_adams=J, hidden=hidden, learning_rate=lr, eps=eps, norm_decay=nd)
    theta, th = noisy_theta(rule)

    def coordinate(t, p, g, s):
        # StateCell: normalized gradient → FC + ELU → LSTM gives s_t.
        n = nd * s["n"] + (1 - nd) * g**2
        g_norm = g / (np.sqrt(n / (1 - nd**t)) + 1e-8)
        x = elu(dense(th["input"], np.array([g_norm])))
        state, h, c = lstm_stack(th["cells"], x, s["h"], s["c"])
        # AdamCell: decay rates from [m'_{t−1}, s_t]; bias correction by β̂_t, γ̂_t recursions.
        ctx = np.concatenate([s["field"], state])
        beta, gamma = sigmoid(dense(th["beta"], ctx)), sigmoid(dense(th["gamma"], ctx))
        m = beta * s["m"] + (1 - beta) * g
        v = gamma * s["v"] + (1 - gamma) * g**2
        beta_hat = beta * s["beta_hat"] + (1 - beta)
        gamma_hat = gamma * s["gamma_hat"] + (1 - gamma)
        field = (m / beta_hat) / np.sqrt(v / gamma_hat + eps)
        # WeightCell (linear) and the combination d_t = Σ_j ρ_j m̂_j; w_t = w_{t−1} − α d_t.
        rho = dense(th["weight"], state)
        return -lr * np.sum(rho * field), dict(n=n, h=h, c=c, m=m, v=v, beta_hat=beta_hat,
                                                gamma_hat=gamma_hat, field=field)

    def init(_):
        z = np.zeros(J)
        return dict(n=0.0, h=np.zeros((1, hidden)), c=np.zeros((1, hidden)), m=z, v=z,
                    beta_hat=z, gamma_hat=z, field=z)

    assert_close(run_lopt(rule, theta), run_reference(*per_coordinate_reference(
        lambda t, p, g, s: coordinate(t, p, g, s), init)))
