"""VeLO (Metz et al. 2022, "VeLO: training versatile learned optimizers by scaling up";
learned_optimization ``research/general_lopt/hyper_v2.HyperV2`` at 32186aa): a per-tensor LSTM
hypernetwork that mixes a bank of per-parameter MLPs and sets each tensor's step size.

Per tensor: Δθ = −λ · 10⁻³ · d · exp(10⁻³ m) · √(mean θ² + 10⁻⁹), (d, m) from the split-input
MLP (2 × 4) on Celo's 14 Adafactor feature groups (``celo_reference.feature_groups``), its
weights 100 × the mean of ``param_inits`` stacked MLPs weighted by the LSTM's raw controls; λ
the LSTM's linear step-size output. The LSTM reads per tensor the fraction trained, the loss
features, and (after dividing θ, m and v by RMS(θ)) log-magnitudes of the momenta's variance,
of the mean and "variance" of v, and the tensor's rank, with a max-pool over tensors.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lopt.rules.base import UpdateRule, constant_dtype
from lopt.rules.celo import FRACTION_CENTRES
from lopt.rules.celo_reference import (
    check_sizes,
    fixed_decays,
    hyper_state,
    hyper_step,
    init_hyper_theta,
    loss_features,
    lstm,
    step_inputs,
)
from lopt.rules.nets import dense

RANKS = 5  # the rank feature: one-hot of the number of axes longer than 1, 0..4
# fraction (9), loss (9), mean v (1), rank (5), var m (3), "var v" (3: v minus the momenta's
# mean broadcasts to the 3 momentum decays, as in the reference)
N_INPUTS = len(FRACTION_CENTRES) + 9 + 1 + RANKS + 3 + 3
BUGGED_LOSS_HORIZON = 10  # use_bugged_loss_features: the loss averages' horizon is 10 steps


def clip_log_abs(v, scale: float = 10.0):
    """clip(log(10⁻⁸ + |scale · v|), ±5) / 2."""
    return jnp.clip(jnp.log(1e-8 + jnp.abs(v * scale)), -5, 5) * 0.5


def tensor_features(p, m, v, fraction, loss_feats) -> jax.Array:
    """HyperV2.lstm_features_for_tensor, from the accumulators before this step's update."""
    norm = jax.lax.rsqrt(jnp.maximum(1e-9, jnp.mean(p**2)))
    m, v = m * norm, v * norm
    axes = tuple(range(p.ndim))
    mean_m = jnp.mean(m, axis=axes, keepdims=True)
    var_m = jnp.mean(jnp.square(m - mean_m), axis=axes)
    mean_v = jnp.mean(v, axis=axes, keepdims=True).reshape(-1)
    var_v = jnp.mean(jnp.square(v - mean_m), axis=axes)  # the reference centres v on m's mean
    rank = jax.nn.one_hot(int(np.sum(np.asarray(p.shape) > 1)), RANKS)
    embed = jnp.tanh((fraction - jnp.asarray(FRACTION_CENTRES, constant_dtype())) * 10)
    # the reference concatenates its features in the order of their sorted names
    return jnp.concatenate([embed, loss_feats, clip_log_abs(mean_v), rank, clip_log_abs(var_m),
                            clip_log_abs(var_v)])


def velo(lstm_hidden: int = 512, hidden: int = 4, layers: int = 2, param_inits: int = 256,
         exp_scale: float = 1e-3, step_scale: float = 1e-3,
         bugged_next_lstm_state: bool = False, bugged_loss_features: bool = False) -> UpdateRule:
    """VeLO (module docstring); defaults: the published VeLO's configuration (512-unit LSTM,
    256 MLPs). ``bugged_next_lstm_state``: the LSTM's state is never carried to the next step
    (``use_bugged_next_lstm_state``, which older checkpoints were trained with);
    ``bugged_loss_features``: the loss averages' half-lives span 10 steps whatever the run
    length (``use_bugged_loss_features``, HyperV2's own default). Both off as amoudgl/celo
    configures the released VeLO-4000 weights; ``lopt import lo-checkpoint`` takes them from the
    checkpoint's config.gin. State: 16 bytes per parameter (float32) plus O(rows + columns) per
    matrix, 2 × ``lstm_hidden`` floats per tensor and the loss averages. Needs ``num_steps``
    and the loss."""
    check_sizes(lstm_hidden=lstm_hidden, hidden=hidden, layers=layers, param_inits=param_inits)
    decays = fixed_decays()

    def init_meta(key):
        return init_hyper_theta(key, N_INPUTS, lstm_hidden, hidden, layers, param_inits)

    def horizon(num_steps):
        return BUGGED_LOSS_HORIZON if bugged_loss_features else num_steps

    def init(theta, params, num_steps):
        return hyper_state(theta, params, num_steps, horizon(num_steps))

    def update(theta, state, grads, params, loss=None):
        inputs = step_inputs(state, grads, params, loss, "velo")
        buf, _, p_leaves, g_leaves, acc_leaves = inputs
        fraction = state["count"] / jnp.asarray(state["num_steps"], constant_dtype())
        feats = loss_features(buf, buf["decays"])
        x = jnp.stack([tensor_features(p.astype(g.dtype), acc["m"], acc["v"], fraction, feats)
                       for p, g, acc in zip(p_leaves, g_leaves, acc_leaves)])
        sched = theta["scheduler"]
        pooled = jnp.max(jax.nn.relu(dense(sched["mix"], x)), axis=0, keepdims=True)
        h, c = lstm(sched["lstm"], dense(sched["input"], x) + pooled, state["h"], state["c"])
        controls, lr_mult = dense(sched["controls"], h), dense(sched["step_size"], h)[:, 0]
        if bugged_next_lstm_state:
            h, c = state["h"], state["c"]
        return hyper_step(theta, state, inputs, controls, lr_mult, h, c, decays, exp_scale,
                          step_scale, mix_scale=100.0)

    return UpdateRule(init_meta=init_meta, init=init, update=update, name="velo",
                      wants_num_steps=True,
                      config={"lstm_hidden": lstm_hidden, "hidden": hidden, "layers": layers,
                              "param_inits": param_inits, "exp_scale": exp_scale,
                              "step_scale": step_scale,
                              "bugged_next_lstm_state": bugged_next_lstm_state,
                              "bugged_loss_features": bugged_loss_features})
