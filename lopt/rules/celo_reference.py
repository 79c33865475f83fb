"""Celo exactly as released (Moudgil et al. 2025, "Celo: training versatile learned optimizers
on a compute diet", TMLR; amoudgl/celo ``celo.optimizers.celo.Celo`` at 66d9761, the
``celo`` config of its factory): lopt's ``celo`` is its own design; this is the reference's.

Per tensor: Δθ = −λ · 0.001 · d · exp(0.001·m) · √(mean(p²) + 10⁻⁹), (d, m) from a split-input
MLP on 14 Adafactor feature groups (each normalized over the whole tensor, ε 10⁻⁵), with the
MLP's weights a softmax-weighted mean of ``param_inits`` stacked MLPs; λ = 0.1·exp(·) and the
mixing weights come from a per-tensor LSTM (64 units) on the fraction trained and the loss
features, with a max-pool over tensors mixed into its input. Decays fixed.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lopt.rules import adafactor_features as af
from lopt.rules.base import UpdateRule, constant_dtype, state_dtype
from lopt.rules.celo import FRACTION_CENTRES, GRAD_CLIP
from lopt.rules.celo2 import apply_split_mlp, group_sizes, init_split_mlp
from lopt.rules.nets import dense, init_dense

MOMENTUM_DECAYS = (0.9, 0.99, 0.999)
RMS_DECAYS = (0.999,)
FACTORED_DECAYS = (0.9, 0.99, 0.999)
LOSS_AVERAGES = 10
N_SCHEDULER_INPUTS = len(FRACTION_CENTRES) + LOSS_AVERAGES - 1


def loss_buffer(num_steps) -> dict:
    """Celo's ``BufferLossAccumulators.init``: 10 loss averages, half-lives log-spaced from 10
    steps to the run length."""
    return {"means": jnp.zeros((LOSS_AVERAGES,)), "iteration": jnp.zeros((), jnp.int32),
            "running_min": jnp.full((LOSS_AVERAGES,), 999999999999.0)}


def loss_decays(num_steps) -> jax.Array:
    halflife = jnp.logspace(1.0, jnp.log10(jnp.asarray(num_steps, constant_dtype())),
                            LOSS_AVERAGES)
    return jnp.exp(-1.0 / halflife)


def update_loss_buffer(buf: dict, loss, decays) -> dict:
    """Bias-corrected averages (a loss above twice the largest average is clipped to it) and
    their running minima (``BufferLossAccumulators.update``)."""
    loss = jnp.asarray(loss, constant_dtype())
    correction = 1 - decays ** (buf["iteration"] + 1)
    approx_max = jnp.where(buf["iteration"] == 0, loss, jnp.max(buf["means"] / correction))
    loss = jnp.minimum(jnp.abs(approx_max) * 2, loss)
    means = buf["means"] * decays + loss * (1.0 - decays)
    return {"means": means, "iteration": buf["iteration"] + 1,
            "running_min": jnp.minimum(buf["running_min"], means / correction)}


def loss_features(buf: dict, decays) -> jax.Array:
    """clip((avg_i − min_i) / max(avg_{i+1} − min_i, 10⁻⁸) − 1, ±1), zero for two steps."""
    cor_mean = buf["means"] / (1 - decays ** buf["iteration"])
    low = buf["running_min"][:-1]
    feature = (cor_mean[:-1] - low) / jnp.maximum(1e-8, cor_mean[1:] - low) - 1.0
    return jnp.where(buf["iteration"] <= 2, 0.0, jnp.clip(feature, -1, 1))


def feature_groups(p, g, acc) -> list:
    """Celo's 14 groups: g, clip(g, ±0.1), p, m, v, m/√(v + 10⁻⁶), 1/√(v + 10⁻⁶), the
    Adafactor-preconditioned g, g/√(v + 10⁻⁶), then the row and column moments, 1/√(· + 10⁻⁸)
    of each and the preconditioned m (a vector: its full moment twice, 1/√(· + 10⁻⁸) twice,
    m/√v_full)."""
    m, v = acc["m"], acc["v"]
    gx = g[..., None]
    precondition, row, col = af.factored_features(acc, p.shape)
    rs = jax.lax.rsqrt(v + 1e-6)
    fac_mom = m * (acc["full"] ** -0.5 if "full" in acc else precondition)
    return [gx, jnp.clip(gx, -0.1, 0.1), p[..., None], m, v, m * rs, rs, gx * precondition,
            gx * rs, row, col, jax.lax.rsqrt(row + 1e-8), jax.lax.rsqrt(col + 1e-8), fac_mom]


def mixed_mlp_steps(ff_stack, controls, lr_mult, p_leaves, g_leaves, acc_leaves, decays,
                    exp_scale: float, step_scale: float, mix_scale: float = 1.0) -> tuple:
    """Every tensor's update and next accumulators: its MLP's weights are mix_scale × the mean
    of the stacked MLPs weighted by its ``controls`` row, and its step
    −λ · d · RMS(θ) · exp(exp_scale · m) · step_scale (λ its ``lr_mult``), Celo's and
    VeLO's per-parameter half."""
    updates, accs = [], []
    for i, (p, g, acc) in enumerate(zip(p_leaves, g_leaves, acc_leaves)):
        acc = af.update_accumulators(acc, g, *decays)
        mix = lambda w, i=i: mix_scale * jnp.mean(
            w * controls[i].reshape((-1,) + (1,) * (w.ndim - 1)), axis=0)
        p32 = p.astype(g.dtype)
        groups = [af.second_moment_normalize(x) for x in feature_groups(p32, g, acc)]
        out = apply_split_mlp(jax.tree.map(mix, ff_stack), groups)
        scale = jnp.sqrt(jnp.mean(jnp.square(p32)) + 1e-9)
        step = out[..., 0] * scale * jnp.exp(out[..., 1] * exp_scale) * step_scale
        updates.append((-lr_mult[i] * step).astype(p.dtype))
        accs.append(acc)
    return updates, accs


def hyper_step(theta, state, inputs, controls, lr_mult, h, c, decays, exp_scale: float,
               step_scale: float, mix_scale: float = 1.0) -> tuple:
    """(updates, next state) of Celo and VeLO once their scheduler has run: ``inputs`` is
    ``step_inputs``' tuple, (controls, lr_mult) the scheduler's outputs per tensor and (h, c)
    its LSTM state to carry."""
    buf, treedef, p_leaves, g_leaves, acc_leaves = inputs
    updates, accs = mixed_mlp_steps(theta["ff"], controls, lr_mult, p_leaves, g_leaves,
                                    acc_leaves, decays, exp_scale, step_scale, mix_scale)
    new_state = {"acc": treedef.unflatten(accs), "count": state["count"] + 1,
                 "num_steps": state["num_steps"], "h": h, "c": c, "loss": buf}
    return treedef.unflatten(updates), new_state


def hyper_state(theta, params, num_steps, horizon) -> dict:
    """The initial state of Celo and VeLO: accumulators, the learned initial LSTM state for
    every tensor and the loss averages over ``horizon`` steps (their decays kept, as the
    references keep them: recomputed each step they can round differently, and the loss
    features amplify a rounding difference)."""
    n = len(jax.tree.leaves(params))
    tile = lambda x: jnp.tile(x, (n, 1))
    return {"acc": af.init_accumulators(params, 3, 1, 3), "count": jnp.zeros((), jnp.int32),
            "num_steps": jnp.asarray(num_steps, jnp.int32),
            "h": tile(theta["lstm_init"]["h"]), "c": tile(theta["lstm_init"]["c"]),
            "loss": {**loss_buffer(horizon), "decays": loss_decays(horizon)}}


def step_inputs(state, grads, params, loss, name: str) -> tuple:
    """(loss buffer after this loss, treedef, params, ±1000-clipped grads, accumulators) per
    tensor: what Celo and VeLO read each step."""
    if loss is None:
        raise ValueError(f"{name} needs the training loss (pass value=loss)")
    if isinstance(loss, dict):
        loss = loss["train"]
    decays = state["loss"]["decays"]
    buf = {**update_loss_buffer(state["loss"], loss, decays), "decays": decays}
    treedef = jax.tree.structure(params)
    g_leaves = [jnp.clip(g.astype(state_dtype(g.dtype)), -GRAD_CLIP, GRAD_CLIP)
                for g in treedef.flatten_up_to(grads)]
    return (buf, treedef, treedef.flatten_up_to(params), g_leaves,
            treedef.flatten_up_to(state["acc"]))


def check_sizes(**sizes) -> None:
    """One line naming the first size that is not a positive integer."""
    for field, value in sizes.items():
        if int(value) < 1:
            raise ValueError(f"{field} must be a positive integer, got {value}")


def fixed_decays() -> tuple:
    """Celo's and VeLO's fixed momentum, RMS and factored decays as arrays."""
    return tuple(jnp.asarray(d, constant_dtype())
                 for d in (MOMENTUM_DECAYS, RMS_DECAYS, FACTORED_DECAYS))


def init_hyper_theta(key, n_inputs: int, lstm_hidden: int, hidden: int, layers: int,
                     param_inits: int) -> dict:
    """The meta-parameters Celo and VeLO share: ``param_inits`` stacked split-input MLPs, the
    LSTM's learned initial state, and the scheduler's layers on ``n_inputs`` features
    (``unused``: the reference's discarded first mixing layer)."""
    k_ff, k_sched = jax.random.split(key)
    sizes = group_sizes(3, 1, 3, matrix=True)
    ff = jax.vmap(lambda k: init_split_mlp(k, sizes, hidden, layers))(
        jax.random.split(k_ff, param_inits))
    ks = jax.random.split(k_sched, 6)
    return {"ff": ff,
            "lstm_init": {"h": jnp.zeros((1, lstm_hidden)), "c": jnp.zeros((1, lstm_hidden))},
            "scheduler": {"unused": init_dense(ks[0], n_inputs, lstm_hidden),
                          "mix": init_dense(ks[1], n_inputs, lstm_hidden),
                          "input": init_dense(ks[2], n_inputs, lstm_hidden),
                          "lstm": init_dense(ks[3], 2 * lstm_hidden, 4 * lstm_hidden),
                          "controls": init_dense(ks[4], lstm_hidden, param_inits),
                          "step_size": init_dense(ks[5], lstm_hidden, 1)}}


def lstm(weights: dict, x, h, c):
    """haiku's LSTM: [x; h] W + b split into gates (input, cell, forget, output), forget bias 1."""
    i, g, f, o = jnp.split(dense(weights, jnp.concatenate([x, h], axis=-1)), 4, axis=-1)
    c = jax.nn.sigmoid(f + 1) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    return jax.nn.sigmoid(o) * jnp.tanh(c), c


def celo_reference(lstm_hidden: int = 64, hidden: int = 4, layers: int = 2,
                   param_inits: int = 1, exp_scale: float = 1e-3,
                   step_scale: float = 1e-3) -> UpdateRule:
    """Celo as released (module docstring); ``param_inits`` = 1 in the released config.
    State: 3 momenta + 1 second moment per parameter (float32), per matrix O(rows + columns),
    2 × ``lstm_hidden`` floats per tensor and the loss averages. The run length is an input:
    ``lopt.as_optax(..., num_steps=N)``. ``scheduler.unused`` is the first of the reference's
    two mixing layers, whose output the reference overwrites: kept so its files import."""
    check_sizes(lstm_hidden=lstm_hidden, hidden=hidden, layers=layers, param_inits=param_inits)
    decays = fixed_decays()

    def init_meta(key):
        return init_hyper_theta(key, N_SCHEDULER_INPUTS, lstm_hidden, hidden, layers,
                                param_inits)

    def init(theta, params, num_steps):
        return hyper_state(theta, params, num_steps, num_steps)

    def schedule(theta, state, buf, n):
        """Per-tensor mixing weights [n, param_inits], step multipliers [n], next LSTM state."""
        sched = theta["scheduler"]
        fraction = state["count"] / jnp.asarray(state["num_steps"], constant_dtype())
        embed = jnp.tanh((fraction - jnp.asarray(FRACTION_CENTRES, constant_dtype())) * 10)
        x = jnp.broadcast_to(jnp.concatenate([embed, loss_features(buf, buf["decays"])]),
                             (n, N_SCHEDULER_INPUTS))
        pooled = jnp.max(jax.nn.relu(dense(sched["mix"], x)), axis=0, keepdims=True)
        h, c = lstm(sched["lstm"], dense(sched["input"], x) + pooled, state["h"], state["c"])
        controls = jax.nn.softmax(dense(sched["controls"], h), axis=-1)
        return controls, jnp.exp(dense(sched["step_size"], h)[:, 0]) * 0.1, h, c

    def update(theta, state, grads, params, loss=None):
        inputs = step_inputs(state, grads, params, loss, "celo_reference")
        buf, p_leaves = inputs[0], inputs[2]
        controls, lr_mult, h, c = schedule(theta, state, buf, len(p_leaves))
        return hyper_step(theta, state, inputs, controls, lr_mult, h, c, decays, exp_scale,
                          step_scale)

    return UpdateRule(init_meta=init_meta, init=init, update=update, name="celo_reference",
                      wants_num_steps=True,
                      config={"lstm_hidden": lstm_hidden, "hidden": hidden, "layers": layers,
                              "param_inits": param_inits, "exp_scale": exp_scale,
                              "step_scale": step_scale})
