"""adafac_mlp and celo against their equations written out in plain numpy."""
import flax.nnx as nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lopt
from lopt.rules import adafac_mlp, celo
from lopt.rules import adafactor_features as af
from lopt.rules.celo import fraction_embedding, loss_decays, loss_features, update_loss_buffer

SHAPES = {"w": (5, 3), "b": (3,), "k": (2, 3, 4), "s": ()}


def _tree(seed, scale=1.0):
    rng = np.random.default_rng(seed)
    return {k: (scale * rng.standard_normal(s)).astype(np.float32) for k, s in SHAPES.items()}


def _np_features(p, g, acc, mom, rms, fac, celo_extra=False):
    """One step of every accumulator and the feature columns of one leaf, from the equations:
    Adafactor's row/column means of g² + 1e-30 over the two largest axes, 1/√v̂ with v̂ =
    R C / mean(R) as learned_optimization computes it, each factor's argument clamped at 1e-9
    (and mean(R) + 1e-9); a vector's 1/√(v + 1e-9) for g and 1/√(v + 1e-6) for m."""
    gx = g[..., None]
    acc = dict(acc)
    acc["m"] = mom * acc["m"] + (1 - mom) * gx
    acc["v"] = rms * acc["v"] + (1 - rms) * gx**2
    g2 = gx**2 + 1e-30
    if p.ndim >= 2:
        big, second = np.argsort(p.shape, kind="stable")[::-1][:2]
        acc["over_big"] = fac * acc["over_big"] + (1 - fac) * g2.mean(axis=big, keepdims=True)
        acc["over_second"] = fac * acc["over_second"] + (1 - fac) * g2.mean(axis=second,
                                                                            keepdims=True)
        over_big = np.broadcast_to(acc["over_big"], p.shape + (len(fac),))
        over_second = np.broadcast_to(acc["over_second"], p.shape + (len(fac),))
        mean_big = acc["over_big"].mean(axis=second, keepdims=True)
        rs_hat = (1 / np.sqrt(np.maximum(over_big / (mean_big + 1e-9), 1e-9))
                  / np.sqrt(np.maximum(over_second, 1e-9)))
        row, col = over_big, over_second
        rs_hat_m = rs_hat
    else:
        acc["full"] = fac * acc["full"] + (1 - fac) * g2
        row = col = acc["full"]
        rs_hat = 1 / np.sqrt(np.maximum(row + 1e-9, 1e-9))
        rs_hat_m = 1 / np.sqrt(row + 1e-6)
    m, v = acc["m"], acc["v"]
    cols = [gx, p[..., None], m, v, m / np.sqrt(v + 1e-6), 1 / np.sqrt(v + 1e-6),
            gx * rs_hat, row, col, 1 / np.sqrt(row + 1e-8),
            1 / np.sqrt(col + 1e-8), m * rs_hat_m]
    if celo_extra:
        cols += [np.clip(gx, -0.1, 0.1), gx / np.sqrt(v + 1e-6)]
    x = np.concatenate([np.broadcast_to(c, p.shape + (c.shape[-1],)) for c in cols], axis=-1)
    axes = tuple(range(p.ndim))
    x = x / np.sqrt(np.mean(x**2, axis=axes, keepdims=True) + 1e-5)
    return x, acc


def _np_acc(p, n):
    acc = {"m": np.zeros(p.shape + (n,)), "v": np.zeros(p.shape + (1,))}
    if p.ndim >= 2:
        big, second = np.argsort(p.shape, kind="stable")[::-1][:2]
        acc["over_big"] = np.zeros(tuple(1 if i == big else s for i, s in enumerate(p.shape))
                                   + (n,))
        acc["over_second"] = np.zeros(tuple(1 if i == second else s
                                            for i, s in enumerate(p.shape)) + (n,))
    else:
        acc["full"] = np.zeros(p.shape + (n,))
    return acc


def _np_mlp(layers, x):
    h = x
    for i, layer in enumerate(layers):
        h = h @ np.asarray(layer["w"], np.float64) + np.asarray(layer["b"], np.float64)
        if i < len(layers) - 1:
            h = np.maximum(h, 0)
    return h[..., 0], h[..., 1]


def _perturbed_theta(rule, seed=1):
    """Random meta-parameters, decay offsets included, so every path is exercised."""
    theta = rule.init_meta(jax.random.PRNGKey(seed))
    leaves, treedef = jax.tree.flatten(theta)
    keys = jax.random.split(jax.random.PRNGKey(seed + 1), len(leaves))
    return jax.tree.unflatten(treedef, [x + 0.1 * jax.random.normal(k, x.shape)
                                        for x, k in zip(leaves, keys)])


def test_adafac_mlp_matches_numpy_equations_over_three_steps():
    rule = adafac_mlp()
    theta = _perturbed_theta(rule)
    d = {k: np.asarray(v, np.float64) for k, v in theta["decays"].items()}
    mom = np.clip(1 - (1 - np.array([0.9, 0.99, 0.999])) * np.exp(10 * d["momentum"]), 0, 1)
    _check_adafac_against_numpy(rule, theta, mom)


def _check_adafac_against_numpy(rule, theta, mom):
    """Three steps of ``rule`` against the numpy equations with momentum decays ``mom`` (the
    RMS and factored ones clipped to [0, 1] from theta's offsets)."""
    d = {k: np.asarray(v, np.float64) for k, v in theta["decays"].items()}
    rms = np.clip(1 - (1 - np.array([0.999])) * np.exp(10 * d["rms"]), 0, 1)
    fac = np.clip(1 - (1 - np.array([0.9, 0.99, 0.999])) * np.exp(10 * d["factored"]), 0, 1)
    params = _tree(0)
    state = rule.init(theta, params)
    np_acc = {k: _np_acc(np.asarray(p, np.float64), 3) for k, p in params.items()}
    update = jax.jit(rule.update)
    for t in range(3):
        grads = _tree(10 + t, scale=0.1 * (t + 1))
        updates, state = update(theta, state, grads, params, jnp.float32(1.0))
        emb = np.tanh(t / np.array([1, 3, 10, 30, 100, 300, 1000, 3000, 1e4, 3e4, 1e5]) - 1)
        for k in SHAPES:
            p, g = np.asarray(params[k], np.float64), np.asarray(grads[k], np.float64)
            x, np_acc[k] = _np_features(p, g, np_acc[k], mom, rms, fac)
            x = np.concatenate([x, np.broadcast_to(emb, p.shape + emb.shape)], axis=-1)
            direction, magnitude = _np_mlp(theta["mlp"], x)
            expected = -direction * np.exp(1e-3 * magnitude) * 1e-3
            np.testing.assert_allclose(updates[k], expected, rtol=2e-4, atol=2e-8,
                                       err_msg=f"leaf {k}, step {t}")
        params = jax.tree.map(lambda p, u: p + u, params, updates)


def test_momentum_init_steps_along_the_normalized_first_momentum_over_root_v():
    """init="momentum": the untrained MLP's direction is exactly the m₁/√v feature, normalized
    over the tensor (column 6 of the numpy features), for every leaf shape, over two steps."""
    rule = adafac_mlp(init="momentum")
    theta = rule.init_meta(jax.random.PRNGKey(3))
    params = _tree(0)
    state = rule.init(theta, params)
    np_acc = {k: _np_acc(np.asarray(p, np.float64), 3) for k, p in params.items()}
    mom, rms, fac = np.array([0.9, 0.99, 0.999]), np.array([0.999]), np.array([0.9, 0.99, 0.999])
    update = jax.jit(rule.update)
    for t in range(2):
        grads = _tree(20 + t, scale=0.1 * (t + 1))
        updates, state = update(theta, state, grads, params)
        for k in SHAPES:
            p, g = np.asarray(params[k], np.float64), np.asarray(grads[k], np.float64)
            x, np_acc[k] = _np_features(p, g, np_acc[k], mom, rms, fac)
            emb = np.tanh(t / np.array([1, 3, 10, 30, 100, 300, 1000, 3000, 1e4, 3e4, 1e5]) - 1)
            full = np.concatenate([x, np.broadcast_to(emb, p.shape + emb.shape)], axis=-1)
            direction, magnitude = _np_mlp(theta["mlp"], full)
            np.testing.assert_allclose(direction, x[..., 6], rtol=1e-6, atol=1e-9)
            np.testing.assert_allclose(updates[k], -1e-3 * x[..., 6] * np.exp(1e-3 * magnitude),
                                       rtol=2e-4, atol=1e-9, err_msg=f"leaf {k}, step {t}")
        params = jax.tree.map(lambda p, u: p + u, params, updates)


def test_factored_preconditioner_is_adafactors_rank_one_estimate():
    g = np.random.default_rng(3).standard_normal((6, 4)).astype(np.float32)
    acc = af.init_accumulators({"w": jnp.zeros((6, 4))}, 1, 1, 1)["w"]
    acc = af.update_accumulators(acc, jnp.asarray(g), jnp.array([0.0]), jnp.array([0.0]),
                                 jnp.array([0.0]))
    precondition, _, _ = af.factored_features(acc, (6, 4))
    g2 = g.astype(np.float64)**2
    expected = np.outer(g2.mean(1), g2.mean(0)) / g2.mean()
    np.testing.assert_allclose(precondition[..., 0], 1 / np.sqrt(expected), rtol=1e-5)
    # a rank-one g² is recovered exactly
    r, c = np.arange(1.0, 7.0), np.arange(1.0, 5.0)
    acc = af.update_accumulators(af.init_accumulators({"w": jnp.zeros((6, 4))}, 1, 1, 1)["w"],
                                 jnp.asarray(np.sqrt(np.outer(r, c)), jnp.float32),
                                 jnp.array([0.0]), jnp.array([0.0]), jnp.array([0.0]))
    np.testing.assert_allclose(af.factored_features(acc, (6, 4))[0][..., 0],
                               1 / np.sqrt(np.outer(r, c)), rtol=1e-5)


def test_tiny_gradients_meet_the_references_clamped_inverse_square_roots():
    """At gradient scale 1e-6 (g² ≈ 1e-12, below the 1e-9 clamp) the preconditioned gradient
    is g·10^4.5 / √max(R/mean R, 1e-9): not g/√v̂, which would make it O(1)."""
    g = 1e-6 * np.random.default_rng(4).standard_normal((6, 4)).astype(np.float32)
    acc = af.update_accumulators(af.init_accumulators({"w": jnp.zeros((6, 4))}, 1, 1, 1)["w"],
                                 jnp.asarray(g), jnp.array([0.0]), jnp.array([0.0]),
                                 jnp.array([0.0]))
    precondition, _, _ = af.factored_features(acc, (6, 4))
    g2 = g.astype(np.float64)**2 + 1e-30
    # (6, 4): the largest axis 0 is averaged for the row moment over axis 1's 4 entries
    row, col = g2.mean(0)[None, :], g2.mean(1)[:, None]
    expected = (1 / np.sqrt(np.maximum(row / (row.mean() + 1e-9), 1e-9))
                / np.sqrt(np.maximum(col, 1e-9)))
    assert np.all(col < 1e-9)
    np.testing.assert_allclose(precondition[..., 0], expected, rtol=1e-4)


def test_decay_offsets_zero_are_the_initial_decays_and_move_one_minus_decay_by_e_to_the_10():
    np.testing.assert_allclose(af.decays_from_offsets((0.9, 0.999), jnp.zeros(2)), [0.9, 0.999],
                               rtol=1e-6)
    moved = af.decays_from_offsets((0.9,), jnp.array([0.1]))
    np.testing.assert_allclose(moved, 1 - 0.1 * np.e, rtol=1e-5)
    np.testing.assert_allclose(af.decays_from_offsets((0.9,), jnp.array([-0.5])),
                               1 - 0.1 * np.exp(-5.0), rtol=1e-6)


def test_decays_are_clipped_to_between_0_and_1():
    np.testing.assert_allclose(af.decays_from_offsets((0.9, 0.999), jnp.array([0.25, 1.0])),
                               [0.0, 0.0])
    np.testing.assert_allclose(af.decays_from_offsets((0.9,), jnp.array([-10.0])), [1.0])


@pytest.mark.parametrize("make", [adafac_mlp, celo])
def test_large_decay_offsets_keep_the_rule_finite(make):
    """Offsets of 0.25 (factored) and 0.8 (rms) make the unclipped decays negative, the second
    moments negative and the update NaN from step 2; clipped, 30 steps stay finite."""
    rule = make()
    theta = rule.init_meta(jax.random.PRNGKey(0))
    theta["decays"] = {"momentum": jnp.full((3,), 0.3), "rms": jnp.full((1,), 0.8),
                       "factored": jnp.full((3,), 0.25)}
    params = _tree(0)
    state = rule.start(theta, params, 30)
    update = jax.jit(rule.update)
    for t in range(30):
        updates, state = update(theta, state, _tree(40 + t, scale=0.5), params, jnp.float32(1.0))
        params = jax.tree.map(lambda p, u: p + u, params, updates)
    for path, x in jax.tree_util.tree_leaves_with_path((params, state["acc"])):
        assert np.all(np.isfinite(np.asarray(x))), jax.tree_util.keystr(path)


LEARNED_NEEDING_PARAMS = ["adafac_mlp", "celo", "per_parameter_mlp"]


@pytest.mark.parametrize("name", LEARNED_NEEDING_PARAMS)
def test_update_without_params_is_a_one_line_error(name):
    rule = lopt.rules.make_rule(name)
    tx = lopt.as_optax(rule, rule.init_meta(jax.random.PRNGKey(0)), num_steps=5)
    params = _tree(0)
    state = tx.init(params)
    with pytest.raises(ValueError, match=r"tx.update\(grads, state, params\)") as err:
        tx.update(params, state, value=1.0)
    assert "\n" not in str(err.value)


def _celo_update(rule, theta, params, grads, losses, num_steps=50):
    state = rule.init(theta, params, num_steps)
    update = jax.jit(rule.update)
    for g, loss in zip(grads, losses):
        u, state = update(theta, state, g, params, jnp.float32(loss))
    return u, state


def test_celo_update_is_the_normalized_mlp_direction_times_the_learned_step():
    rule = celo()
    theta = _perturbed_theta(rule, seed=4)
    params, grads = _tree(5), _tree(6, scale=0.3)
    updates, state = _celo_update(rule, theta, params, [grads], [2.0])
    # the learned per-tensor step sizes: recompute the scheduler's output from its state
    log_lr = np.asarray(state["h"] @ theta["scheduler"]["out"]["w"][:, 0]
                        + theta["scheduler"]["out"]["b"][0])
    for i, k in enumerate(sorted(SHAPES)):  # jax flattens dict leaves in sorted key order
        p, g = np.asarray(params[k], np.float64), np.asarray(grads[k], np.float64)
        d = {n: np.asarray(v, np.float64) for n, v in theta["decays"].items()}
        mom = np.clip(1 - (1 - np.array([0.9, 0.99, 0.999])) * np.exp(10 * d["momentum"]), 0, 1)
        rms = np.clip(1 - 0.001 * np.exp(10 * d["rms"]), 0, 1)
        fac = np.clip(1 - (1 - np.array([0.9, 0.99, 0.999])) * np.exp(10 * d["factored"]), 0, 1)
        x, _ = _np_features(p, g, _np_acc(p, 3), mom, rms, fac, celo_extra=True)
        direction, magnitude = _np_mlp(theta["mlp"], x)
        u = direction * np.exp(1e-3 * magnitude)
        u = u / np.sqrt(np.mean(u**2) + 1e-12)
        np.testing.assert_allclose(updates[k], -1e-3 * np.exp(log_lr[i]) * u, rtol=2e-4,
                                   atol=1e-9, err_msg=k)


def test_untrained_celo_steps_step_scale_per_tensor_rms_and_its_scheduler_moves_it():
    rule = celo()
    theta = rule.init_meta(jax.random.PRNGKey(0))
    params, grads = _tree(1), _tree(2)
    updates, _ = _celo_update(rule, theta, params, [grads], [1.0])
    for u in jax.tree.leaves(updates):
        np.testing.assert_allclose(np.sqrt(np.mean(np.square(u))), 1e-3, rtol=1e-4)
    doubled = jax.tree.map(lambda x: x, theta)
    doubled["scheduler"]["out"]["b"] = jnp.full((1,), np.log(2.0))
    updates2, _ = _celo_update(rule, doubled, params, [grads], [1.0])
    for a, b in zip(jax.tree.leaves(updates), jax.tree.leaves(updates2)):
        np.testing.assert_allclose(b, 2 * a, rtol=1e-5)


def test_celo_schedule_inputs_fraction_and_scale_free_loss_features():
    expected = np.tanh(10 * (30 / 120 - np.array([0.03, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0, 1.1])))
    np.testing.assert_allclose(fraction_embedding(30, 120), expected, rtol=1e-5)
    losses = 3.0 + np.sin(np.arange(40.0)) + np.linspace(2, 0, 40)
    decays = loss_decays(200)
    halflives = -1 / np.log(np.asarray(decays, np.float64))
    np.testing.assert_allclose(halflives, np.logspace(1, np.log10(200), 10), rtol=1e-4)
    feats = []
    for scale in (1.0, 1e-3):
        buf = {"sum": jnp.zeros(10), "min": jnp.full(10, jnp.inf), "count": jnp.array(0)}
        for loss in losses:
            buf = update_loss_buffer(buf, scale * loss, decays)
        feats.append(np.asarray(loss_features(buf, decays)))
    np.testing.assert_allclose(feats[0], feats[1], atol=1e-4)
    assert np.all(np.abs(feats[0]) <= 1) and np.any(feats[0] != 0)


def test_celo_needs_the_run_length():
    with pytest.raises(ValueError, match="num_steps"):
        lopt.as_optax(celo(), celo().init_meta(jax.random.PRNGKey(0)))
    with pytest.raises(ValueError, match="decays"):
        adafac_mlp(momentum_decays=(0.9, 1.0, 0.5))
    with pytest.raises(ValueError, match="same length"):
        celo(momentum_decays=(0.9,))


class _Net(nnx.Module):
    def __init__(self, rngs):
        self.hidden = nnx.Linear(64, 16, rngs=rngs)
        self.out = nnx.Linear(16, 10, rngs=rngs)

    def __call__(self, x):
        return self.out(jax.nn.relu(self.hidden(x)))


@pytest.mark.parametrize("make", [adafac_mlp, celo])
def test_rules_compose_with_optax_chain_and_step_a_flax_nnx_model(make):
    """Through optax.chain (decoupled weight decay, a schedule) inside nnx.Optimizer: the
    update equals the rule's own update, decayed and scaled, and the loss reaches the rule."""
    rule = make()
    theta = _perturbed_theta(rule, seed=7)
    scale = 0.5
    tx = optax.chain(lopt.as_optax(rule, theta, num_steps=10), optax.add_decayed_weights(1e-2),
                     optax.scale_by_schedule(lambda step: scale))
    x = jax.random.normal(jax.random.PRNGKey(0), (32, 64))
    y = jnp.arange(32) % 10
    model = _Net(nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    raw = jax.tree.map(jnp.copy, nnx.as_pure(nnx.state(model, nnx.Param)))

    def loss_fn(model):
        return optax.softmax_cross_entropy_with_integer_labels(model(x), y).mean()

    @nnx.jit  # one compile; op by op the rule's network costs hundreds
    def train_step(model, optimizer):
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        return loss, grads, optimizer.update(model, grads, value=loss)

    loss, grads, updates = train_step(model, optimizer)
    own, _ = jax.jit(rule.update)(theta, rule.start(theta, raw, 10),
                                  nnx.as_pure(nnx.state(grads)), raw, loss)
    expected = jax.tree.map(lambda u, p: scale * (u + 1e-2 * p), own, raw)
    for a, b in zip(jax.tree.leaves(nnx.as_pure(updates)), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-9)
    assert float(loss_fn(model)) != float(loss)


def test_meta_gradient_reaches_every_meta_parameter():
    """Through a 4-step unroll on a least-squares problem: every leaf of celo's theta (the MLP
    and decay offsets it shares with adafac_mlp, and the scheduler) gets a finite, non-zero
    meta-gradient."""
    rule = celo()
    theta = _perturbed_theta(rule, seed=11)
    a = jax.random.normal(jax.random.PRNGKey(0), (6, 4))
    loss = lambda p: jnp.mean((a @ p["w"] + p["b"]) ** 2)

    def meta_loss(theta):
        def step(carry, _):
            params, state = carry
            value, grads = jax.value_and_grad(loss)(params)
            updates, state = rule.update(theta, state, grads, params, value)
            params = jax.tree.map(lambda p, u: p + 100 * u, params, updates)
            return (params, state), loss(params)

        params = {"w": jnp.ones((4, 3)), "b": jnp.ones((3,))}
        _, losses = jax.lax.scan(step, (params, rule.start(theta, params, 4)), None, length=4)
        return losses.sum()

    grads = jax.jit(jax.grad(meta_loss))(theta)
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        assert np.all(np.isfinite(g)) and np.any(g != 0), jax.tree_util.keystr(path)


def test_unclipped_momentum_decays_compute_learned_optimizations_negative_decay():
    """clip_momentum_decays=False (what an imported learned_optimization file says): a decay
    offset of 0.25 makes the 0.9 momentum decay 1 − 0.1·e^2.5 = −0.218, used as it is, as
    learned_optimization's rolling momentum does; the default clips it to 0."""
    offsets = np.array([0.25, 0.0, -0.1])
    for clip in (False, True):
        rule = adafac_mlp(clip_momentum_decays=clip)
        theta = _perturbed_theta(rule)
        theta["decays"]["momentum"] = jnp.asarray(offsets, jnp.float32)
        d = np.asarray(theta["decays"]["momentum"], np.float64)
        mom = 1 - (1 - np.array([0.9, 0.99, 0.999])) * np.exp(10 * d)
        assert mom[0] < -0.2
        _check_adafac_against_numpy(rule, theta, np.clip(mom, 0, 1) if clip else mom)
    assert adafac_mlp(clip_momentum_decays=False).config["clip_momentum_decays"] is False
    assert "clip_momentum_decays" not in adafac_mlp().config
