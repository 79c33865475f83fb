"""Celo2's Adam-grafted magnitude (issue 35): the normalized step takes the per-tensor RMS of
Adam's step, checked against Adam's equations in plain numpy and against optax.adam itself."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lopt
from lopt.rules import celo2, celo2_base

BETA = 0.01
PARAMS = {"w": jax.random.normal(jax.random.PRNGKey(0), (16, 12)), "b": jnp.ones(12),
          "k": jax.random.normal(jax.random.PRNGKey(1), (3, 3, 2, 4))}


def _grads(t, scale=1.0):
    return jax.tree.map(lambda p: scale * (jax.random.normal(jax.random.PRNGKey(t), p.shape)
                                           + 0.3), PARAMS)


def _side_by_side(ours, theirs, steps, grads=None, advance=False):
    """(step, our leaf, their leaf) for every leaf of every step of two optax transformations
    fed the same gradients (``grads(t)``, default ``_grads``); with ``advance`` the parameters
    move by ``theirs``'s updates."""
    grads = grads or _grads
    s_ours, s_theirs, params = ours.init(PARAMS), theirs.init(PARAMS), PARAMS
    for t in range(steps):
        g = grads(t)
        u_ours, s_ours = ours.update(g, s_ours, params, value=1.0)
        u_theirs, s_theirs = theirs.update(g, s_theirs, params)
        for a, b in zip(jax.tree.leaves(u_ours), jax.tree.leaves(u_theirs)):
            yield t, a, b
        if advance:
            params = optax.apply_updates(params, u_theirs)


def test_untrained_adam_start_without_orthogonalization_is_optax_adam():
    """Equal where every gradient element is well above 10⁻⁴ (the start's direction reads
    m/√(v + 10⁻⁸) on the uncorrected v, so its ε differs from Adam's for tiny elements)."""
    rule = celo2_base(init="adam", magnitude="adam", step_scale=BETA)
    ours = lopt.as_optax(rule, rule.init_meta(jax.random.PRNGKey(0)))
    adam = optax.adam(BETA, b1=0.9, b2=0.95)
    well_above = lambda t: jax.tree.map(lambda x: jnp.sign(x) * (0.5 + jnp.abs(x)), _grads(t))
    for _, a, b in _side_by_side(ours, adam, 12, well_above, advance=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-7 * BETA)


def _adam_step_rms(grads_so_far, axes):
    """RMS over ``axes`` of Adam's bias-corrected step (β = 0.9, 0.95, ε = 1e-8), numpy."""
    m = v = 0.0
    for g in grads_so_far:
        g = np.asarray(g, np.float64)
        m, v = 0.9 * m + 0.1 * g, 0.95 * v + 0.05 * g * g
    t = len(grads_so_far)
    step = (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.95**t)) + 1e-8)
    return np.sqrt(np.mean(step**2, axis=axes, keepdims=True))


@pytest.mark.parametrize("make", [celo2, celo2_base])
def test_adam_magnitude_gives_each_tensor_adams_step_rms_and_keeps_the_direction(make):
    graft = make(magnitude="adam", step_scale=BETA)
    fixed = make(step_scale=BETA)
    theta = graft.init_meta(jax.random.PRNGKey(3))
    s_graft, s_fixed = graft.init(theta, PARAMS), fixed.init(theta, PARAMS)
    seen = []
    for t in range(6):
        g = _grads(t, scale=10.0 ** -(t % 3))
        seen.append(g)
        u_graft, s_graft = graft.update(theta, s_graft, g, PARAMS, 1.0)
        u_fixed, s_fixed = fixed.update(theta, s_fixed, g, PARAMS, 1.0)
        for name in PARAMS:
            axes = tuple(range(PARAMS[name].ndim))[-2:]
            rms = _adam_step_rms([s[name] for s in seen], axes)
            # celo2's own step has RMS β per slice, so the graft is that step times Adam's RMS
            np.testing.assert_allclose(u_graft[name], u_fixed[name] * rms, rtol=1e-4,
                                       atol=1e-9)
            got = np.sqrt(np.mean(np.square(u_graft[name]), axis=axes, keepdims=True))
            np.testing.assert_allclose(got, BETA * rms, rtol=1e-4)


def test_a_noisy_gradient_shrinks_the_grafted_step_but_not_celo2s():
    """Celo2's step RMS is β whatever the gradients say; the graft's follows Adam's, which
    falls when the gradient's sign flips from step to step (the diagnosis of issue 35)."""
    graft, fixed = celo2_base(magnitude="adam", step_scale=BETA), celo2_base(step_scale=BETA)
    theta = graft.init_meta(jax.random.PRNGKey(0))
    s_graft, s_fixed = graft.init(theta, PARAMS), fixed.init(theta, PARAMS)
    for t in range(40):
        g = jax.tree.map(lambda p: (-1.0) ** t * jnp.ones_like(p), PARAMS)  # noqa: B023
        u_graft, s_graft = graft.update(theta, s_graft, g, PARAMS, 1.0)
        u_fixed, s_fixed = fixed.update(theta, s_fixed, g, PARAMS, 1.0)
    rms = lambda u: float(jnp.sqrt(jnp.mean(jnp.square(u["w"]))))
    assert rms(u_fixed) == pytest.approx(BETA, rel=1e-4)
    assert rms(u_graft) < 0.2 * BETA


def test_settings_are_checked_and_the_config_round_trips(tmp_path):
    with pytest.raises(ValueError, match="magnitude must be one of rms, adam"):
        celo2(magnitude="sign")
    with pytest.raises(ValueError, match="init must be one of"):
        celo2(init="sgd")
    assert "magnitude" not in celo2().config  # files from before the setting read the same
    rule = celo2_base(magnitude="adam", init="adam", step_scale=BETA)
    theta = rule.init_meta(jax.random.PRNGKey(0))
    lopt.save(tmp_path / "g.lopt", rule, theta)
    loaded, _ = lopt.load(tmp_path / "g.lopt")
    assert loaded.config == rule.config and loaded.config["magnitude"] == "adam"


def test_newton_schulz_only_up_to_max_dim_orthogonalizes_the_small_matrices_alone(tmp_path):
    """With orthogonalize_max_dim = 4 the conv kernel (last two axes 2 x 4) steps as celo2 and
    the 16 x 12 matrix as celo2_base; the vector is the same in all three."""
    settings = {"magnitude": "adam", "schedule": "cosine", "step_scale": BETA}
    cheap = celo2(orthogonalize_max_dim=4, **settings)
    full, none = celo2(**settings), celo2_base(**settings)
    theta = cheap.init_meta(jax.random.PRNGKey(5))
    txs = [lopt.as_optax(r, theta, num_steps=10) for r in (cheap, full, none)]
    states = [tx.init(PARAMS) for tx in txs]
    for t in range(4):
        g = _grads(t, scale=10.0 ** -t)
        (u, states[0]), (u_full, states[1]), (u_none, states[2]) = [
            tx.update(g, s, PARAMS) for tx, s in zip(txs, states)]
        np.testing.assert_array_equal(u["k"], u_full["k"])
        np.testing.assert_array_equal(u["w"], u_none["w"])
        np.testing.assert_array_equal(u["b"], u_full["b"])
        if t:  # the first step is the warm-up's 0
            assert np.abs(np.asarray(u["w"]) - np.asarray(u_full["w"])).max() > 1e-3 * BETA
    lopt.save(tmp_path / "c.lopt", cheap, theta)
    assert lopt.load(tmp_path / "c.lopt")[0].config["orthogonalize_max_dim"] == 4
    assert "orthogonalize_max_dim" not in full.config
    for bad in (-1, 2.5, True, "64"):
        with pytest.raises(ValueError, match="orthogonalize_max_dim must be a non-negative"):
            celo2(orthogonalize_max_dim=bad)


def test_weight_decay_subtracts_beta_lambda_theta_under_the_schedule():
    """Decoupled weight decay (Loshchilov & Hutter 2019) inside the rule: each update is the
    undecayed rule's minus β λ θ times the warm-up + cosine multiplier (computed here in
    numpy), at parameters that move between steps."""
    lam, steps = 0.3, 12
    settings = {"magnitude": "adam", "schedule": "cosine", "step_scale": BETA}
    decayed, plain = celo2(weight_decay=lam, **settings), celo2(**settings)
    theta = plain.init_meta(jax.random.PRNGKey(2))
    txs = [lopt.as_optax(r, theta, num_steps=steps) for r in (decayed, plain)]
    states, params = [tx.init(PARAMS) for tx in txs], PARAMS
    warm = max(1, steps // 20)
    for t in range(steps):
        g = _grads(t, scale=10.0 ** -(t % 4))
        (u, states[0]), (u_plain, states[1]) = [tx.update(g, s, params)
                                                for tx, s in zip(txs, states)]
        factor = t / warm if t < warm else 0.5 * (1 + np.cos(np.pi * (t - warm) / (steps - warm)))
        for name in PARAMS:
            want = np.asarray(u_plain[name], np.float64) \
                - BETA * lam * factor * np.asarray(params[name], np.float64)
            np.testing.assert_allclose(u[name], want, rtol=1e-5, atol=1e-9)
        params = optax.apply_updates(params, u)
    assert decayed.config["weight_decay"] == lam and "weight_decay" not in plain.config
    for bad in (-0.1, float("nan"), True, "0.1"):
        with pytest.raises(ValueError, match="weight_decay must be a finite number >= 0"):
            celo2(weight_decay=bad)


def test_scaled_by_schedule_is_optax_adam_under_the_schedule():
    from lopt.rules import adam
    from lopt.rules.base import scaled_by_schedule

    schedule = optax.warmup_cosine_decay_schedule(0.0, 1.0, 3, 12, 0.0)
    ours = lopt.as_optax(scaled_by_schedule(adam(BETA), schedule))
    theirs = optax.adam(lambda t: BETA * schedule(t))
    for _, a, b in _side_by_side(ours, theirs, 12):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("num_steps", [7, 40, 1000])
def test_cosine_schedule_is_optaxs_warmup_cosine_with_a_traced_length(num_steps):
    from lopt.rules.celo2 import warmup_cosine

    want = optax.warmup_cosine_decay_schedule(0.0, 1.0, max(1, num_steps // 20), num_steps, 0.0)
    got = jax.jit(jax.vmap(warmup_cosine, in_axes=(0, None)))(jnp.arange(num_steps + 3),
                                                                 num_steps)
    np.testing.assert_allclose(got, [want(t) for t in range(num_steps + 3)], atol=1e-6)


def test_cosine_rule_is_the_constant_rule_times_the_schedule_and_needs_the_run_length():
    from lopt.rules.celo2 import warmup_cosine

    cos = celo2(magnitude="adam", schedule="cosine", step_scale=BETA)
    const = celo2(magnitude="adam", step_scale=BETA)
    theta = cos.init_meta(jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="pass num_steps"):
        lopt.as_optax(cos, theta)
    a, b = lopt.as_optax(cos, theta, num_steps=30), lopt.as_optax(const, theta)
    for t, x, y in _side_by_side(a, b, 8):
        np.testing.assert_allclose(x, y * warmup_cosine(t, 30), rtol=1e-5, atol=1e-12)
    assert cos.config["schedule"] == "cosine" and "schedule" not in const.config
