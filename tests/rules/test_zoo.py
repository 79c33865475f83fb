"""The learned rules of the seeds: structure, equivariance, invariances, reductions, learning."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lopt.evaluation import loss_curves
from lopt.outer import TBPTT, default_meta_optimizer, train
from lopt.rules import (
    celo2,
    celo2_base,
    hierarchical,
    hyperadam,
    l2l_lstm,
    multiscale_adam,
    normalized_history,
    per_parameter_mlp,
    rnnprop,
)
from lopt.tasks import quadratic_family

SMALL = {
    "l2l_lstm": lambda: l2l_lstm(hidden=6, layers=2),
    "rnnprop": lambda: rnnprop(hidden=6, layers=2),
    "hyperadam": lambda: hyperadam(num_adams=4, hidden=6, learning_rate=0.05),
    "lwa_a": lambda: multiscale_adam("lwa_a", learning_rate=0.3),
    "lwa_b": lambda: multiscale_adam("lwa_b", learning_rate=0.3),
    "lwa_c": lambda: multiscale_adam("lwa_c", learning_rate=0.3),
    "ms_mlp": lambda: multiscale_adam("mlp", hidden=8, learning_rate=0.05),
    "rnn_a": lambda: multiscale_adam("rnn_a", hidden=6, learning_rate=0.05),
    "rnn_b": lambda: multiscale_adam("rnn_b", hidden=6, learning_rate=0.05),
    "history_k": lambda: normalized_history(k=4, variant="timesteps", hidden=8, eta_min=0.01),
    "history_mom": lambda: normalized_history(k=4, variant="momentums", hidden=8, eta_min=0.01),
    "per_param_mlp": lambda: per_parameter_mlp(hidden=8, step_scale=0.05),
    "hierarchical": lambda: hierarchical(hidden=8, tensor_hidden=4, context=3, step_scale=0.05),
    "celo2": lambda: celo2(hidden=8, step_scale=0.05),
    "celo2_base": lambda: celo2_base(hidden=8, step_scale=0.05),
}
SCALE_INVARIANT = ["rnnprop", "hyperadam", "lwa_a", "lwa_b", "lwa_c", "ms_mlp", "rnn_a", "rnn_b",
                   "history_k", "history_mom"]


def _grads(params, seed):
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    return jax.tree.unflatten(treedef, [jax.random.normal(k, leaf.shape, leaf.dtype)
                                        for k, leaf in zip(keys, leaves)])


def _run(rule, theta, params, grad_seq):
    state = rule.init(theta, params)
    out = []
    for g in grad_seq:
        u, state = rule.update(theta, state, g, params, jnp.asarray(1.0))
        out.append(u)
    return out, state


@pytest.mark.parametrize("name", sorted(SMALL))
def test_structure_shapes_dtypes_and_permutation_equivariance(name):
    rule = SMALL[name]()
    theta = rule.init_meta(jax.random.PRNGKey(0))
    params = {"w": jnp.ones((3, 2)), "b": jnp.zeros(5), "s": jnp.asarray(0.5)}
    grads = [_grads(params, i) for i in range(3)]
    updates, state = _run(rule, theta, params, grads)
    for u in updates:
        assert jax.tree.structure(u) == jax.tree.structure(params)
        for a, p in zip(jax.tree.leaves(u), jax.tree.leaves(params)):
            assert a.shape == p.shape and a.dtype == p.dtype and np.all(np.isfinite(a))
    assert jax.tree.structure(state) == jax.tree.structure(rule.init(theta, params))
    perm = np.random.default_rng(1).permutation(5)
    permuted, _ = _run(rule, theta, params,
                       [dict(g, b=g["b"][perm]) for g in grads])
    np.testing.assert_allclose(permuted[-1]["b"], updates[-1]["b"][perm], rtol=1e-5, atol=1e-8)
    assert float(jnp.abs(updates[-1]["b"]).max()) > 0


@pytest.mark.parametrize("name", SCALE_INVARIANT)
def test_gradient_scale_invariance(name):
    """The normalized inputs (Adam moments) make the step independent of the gradient scale."""
    rule = SMALL[name]()
    theta = rule.init_meta(jax.random.PRNGKey(0))
    params = {"x": jnp.zeros(6)}
    grads = [_grads(params, i) for i in range(4)]
    base, _ = _run(rule, theta, params, grads)
    for c in (1e-3, 250.0):
        scaled, _ = _run(rule, theta, params, [jax.tree.map(lambda g: c * g, g) for g in grads])  # noqa: B023
        np.testing.assert_allclose(scaled[-1]["x"], base[-1]["x"], rtol=2e-4, atol=1e-7)


def _adam_reference(b1, b2, lr, eps=1e-8, eps_root=0.0, steps=12):
    params = {"x": jnp.linspace(-1.0, 1.0, 4)}
    grads = [_grads(params, i) for i in range(steps)]
    tx = optax.adam(lr, b1=b1, b2=b2, eps=eps, eps_root=eps_root)
    s = tx.init(params)
    out = []
    for g in grads:
        u, s = tx.update(g, s, params)
        out.append(np.asarray(u["x"]))
    return params, grads, np.array(out)


@pytest.mark.parametrize("kind", ["lwa_a", "lwa_c"])
@pytest.mark.parametrize("j", [0, 3])
def test_lwa_with_all_weight_on_one_timescale_is_adam(kind, j):
    rule = multiscale_adam(kind, learning_rate=0.01)
    betas = rule.config["betas"]
    theta = {"a": jnp.zeros(len(betas)).at[j].set(1.0)}
    params, grads, expected = _adam_reference(betas[j], 0.999, 0.01)
    got, _ = _run(rule, theta, params, grads)
    np.testing.assert_allclose(np.array([u["x"] for u in got]), expected, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("kind", ["lwa_a", "lwa_b"])
def test_lwa_weights_sum_to_one_and_lwa_b_is_positive(kind):
    from lopt.rules.multiscale_adam import lwa_weights

    rng = np.random.default_rng(0)
    for a in [rng.normal(size=6) * 5, np.full(6, -1 / 6) + 1e-9 * rng.normal(size=6),
              np.array([1.0, -1.0, 0, 0, 0, 0])]:
        w = np.asarray(lwa_weights(kind, jnp.asarray(a, jnp.float32)))
        assert np.all(np.isfinite(w)) and abs(w.sum() - 1) < 1e-5, (a, w)
        if kind == "lwa_b":
            assert np.all(w > 0)
    # LWA_a is not singular where a/Σa would be (Σa = 0), and its gradient is finite there.
    g = jax.grad(lambda a: lwa_weights("lwa_a", a)[0])(jnp.array([0.5, -0.5, 0, 0, 0, 0]))
    assert np.all(np.isfinite(np.asarray(g)))


def test_lwa_b_with_one_dominant_logit_is_adam_at_that_timescale():
    rule = multiscale_adam("lwa_b", learning_rate=0.01)
    k = len(rule.config["betas"])
    # A softmax cannot put exactly all weight on one timescale; logits 30 apart come within e^-30.
    theta = {"a": jnp.zeros(k).at[2].set(30.0)}
    params, grads, expected = _adam_reference(rule.config["betas"][2], 0.999, 0.01)
    got, _ = _run(rule, theta, params, grads)
    np.testing.assert_allclose(np.array([u["x"] for u in got]), expected, rtol=1e-5, atol=1e-9)


def test_hyperadam_with_fixed_decay_rates_and_one_candidate_is_adam():
    rule = hyperadam(num_adams=1, hidden=5, learning_rate=0.01)
    theta = rule.init_meta(jax.random.PRNGKey(0))
    b1, b2 = 0.9, 0.99
    theta["beta"] = {"w": jnp.zeros_like(theta["beta"]["w"]),
                     "b": jnp.array([np.log(b1 / (1 - b1))], jnp.float32)}
    theta["gamma"] = {"w": jnp.zeros_like(theta["gamma"]["w"]),
                      "b": jnp.array([np.log(b2 / (1 - b2))], jnp.float32)}
    theta["weight"] = {"w": jnp.zeros_like(theta["weight"]["w"]), "b": jnp.ones((1,))}
    # Algorithm 2: ε = 1e-24 inside the square root, none outside.
    params, grads, expected = _adam_reference(b1, b2, 0.01, eps=0.0, eps_root=1e-24)
    got, _ = _run(rule, theta, params, grads)
    # σ(logit(β)) reproduces β only to float32 precision.
    np.testing.assert_allclose(np.array([u["x"] for u in got]), expected, rtol=2e-4, atol=1e-8)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_thirty_meta_training_steps_lower_the_meta_loss(name):
    """On held-out instances: the mean loss over inner steps 1–12 (the rows that depend on θ;
    row 0 is the initial loss) falls by at least 1%."""
    rule, family = SMALL[name](), quadratic_family(dim=4)
    key = jax.random.PRNGKey(42)
    objective = jax.jit(lambda th: loss_curves(rule, th, family, key, num_tasks=8,
                                               num_steps=12)[1:].mean())
    theta0 = rule.init_meta(jax.random.split(jax.random.PRNGKey(0), 3)[0])
    # Whole 12-step runs with second derivatives: the meta-gradient of exactly this objective.
    result = train(rule, family, TBPTT(num_runs=8, truncation=12, horizon=12, stagger=False,
                                       second_derivatives=True), num_steps=30,
                   seed=0, progress=False, meta_optimizer=default_meta_optimizer(1e-2))
    before, after = float(objective(theta0)), float(objective(result.theta))
    assert after < 0.99 * before, (before, after)


@pytest.mark.parametrize("variant,expected", [("timesteps", [1.05, 1.10, 1.15]),
                                              ("momentums", [1.05, 1.125, 1.2375])])
def test_history_step_matches_the_seed_equations_by_hand(variant, expected):
    """With Δx held at 0.5, η_min = 0.1, k = 3 and x_0 = 1: x_ref = (x_max + x_min)/2 (or x_t),
    x_diff = x_max − x_min over the last 3 iterates, x_{t+1} = x_ref + Δx (x_diff + η_min)."""
    rule = normalized_history(k=3, variant=variant, hidden=4, eta_min=0.1)
    theta = rule.init_meta(jax.random.PRNGKey(0))
    theta = {"hidden": jax.tree.map(jnp.zeros_like, theta["hidden"]),
             "out": {"w": jnp.zeros_like(theta["out"]["w"]),
                     "b": jnp.full((1,), np.arctanh(0.5), jnp.float32)}}
    params = {"x": jnp.asarray(1.0)}
    state = rule.init(theta, params)
    got = []
    for g in (0.3, -0.2, 0.7):
        u, state = rule.update(theta, state, {"x": jnp.asarray(g)}, params)
        params = {"x": params["x"] + u["x"]}
        got.append(float(params["x"]))
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_hierarchical_context_depends_on_the_loss():
    rule = SMALL["hierarchical"]()
    theta = rule.init_meta(jax.random.PRNGKey(0))
    params = {"x": jnp.linspace(-1, 1, 5)}
    g = _grads(params, 0)
    a, _ = rule.update(theta, rule.init(theta, params), g, params, jnp.asarray(1.0))
    b, _ = rule.update(theta, rule.init(theta, params), g, params, jnp.asarray(100.0))
    assert float(jnp.abs(a["x"] - b["x"]).max()) > 0
    # The held-out loss, where there is one, is a further input.
    same = {"train": jnp.asarray(1.0), "valid": jnp.asarray(1.0)}
    worse = {"train": jnp.asarray(1.0), "valid": jnp.asarray(5.0)}
    c, _ = rule.update(theta, rule.init(theta, params), g, params, same)
    d, _ = rule.update(theta, rule.init(theta, params), g, params, worse)
    assert float(jnp.abs(c["x"] - d["x"]).max()) > 0
    with pytest.raises(ValueError, match="loss"):
        rule.update(theta, rule.init(theta, params), g, params, None)


ESTIMATOR_PAIRS = [
    ("l2l_lstm", "pes"), ("rnnprop", "es"), ("hyperadam", "mixed"), ("rnn_b", "reparam"),
    ("history_mom", "tbptt"), ("per_param_mlp", "es_full"), ("hierarchical", "pes"),
]


@pytest.mark.parametrize("name,estimator", ESTIMATOR_PAIRS)
def test_meta_trainable_with_every_estimator(name, estimator):
    """Every rule and every estimator meet at least once: one outer step gives a finite,
    non-zero meta-gradient for every leaf group of theta."""
    from lopt.outer import ES, PES, Mixed, Reparam

    kw = dict(num_tasks=4, truncation=4, horizon=8)
    est = {"pes": PES(**kw, sigma=0.01), "es": ES(**kw, sigma=0.01),
           "es_full": ES(num_runs=4, horizon=6, sigma=0.01, full_horizon=True),
           "mixed": Mixed(**kw, sigma=0.01), "reparam": Reparam(**kw, sigma=0.01),
           "tbptt": TBPTT(**kw, second_derivatives=True)}[estimator]
    rule, family = SMALL[name](), quadratic_family(dim=3)
    built = est.build(rule, family)
    theta = rule.init_meta(jax.random.PRNGKey(0))
    grad, _, metrics = jax.jit(built.grad)(theta, built.init(jax.random.PRNGKey(1), theta), None)
    flat = np.concatenate([np.ravel(x) for x in jax.tree.leaves(grad)])
    assert np.all(np.isfinite(flat)) and np.abs(flat).max() > 0
    assert int(metrics["nonfinite_runs"]) == 0
