"""A Celo-style learned optimizer (Moudgil et al. 2025, "Celo: training versatile learned
optimizers on a compute diet"; Celo2, 2026): a per-parameter MLP on Adafactor features whose
update is RMS-normalized per tensor every step, scaled by a learned scheduler."""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from lopt.rules import adafactor_features as af
from lopt.rules.adafac_mlp import mlp_outputs
from lopt.rules.base import UpdateRule
from lopt.rules.nets import (
    dense,
    init_dense,
    init_lstm_cell,
    init_mlp,
    log_magnitude,
    lstm_cell,
)

# tanh(10·(t/T − c)): where the run is, as a fraction of its length T, around each c.
FRACTION_CENTRES = (0.03, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0, 1.1)
LOSS_AVERAGES = 10
GRAD_CLIP = 1000.0


def fraction_embedding(count, num_steps) -> jax.Array:
    """tanh(10·(t/T − c)) for the centres c of ``FRACTION_CENTRES``: the fraction trained as
    bounded features, the same for every run length (Celo's scheduler input)."""
    frac = jnp.asarray(count, jnp.float32) / jnp.maximum(jnp.asarray(num_steps, jnp.float32), 1)
    return jnp.tanh(10.0 * (frac - jnp.asarray(FRACTION_CENTRES, jnp.float32)))


def loss_decays(num_steps) -> jax.Array:
    """Decays of the loss averages: half-lives log-spaced from 10 steps to the run length."""
    top = jnp.log10(jnp.maximum(jnp.asarray(num_steps, jnp.float32), 10.0))
    halflife = 10.0 ** (1.0 + jnp.linspace(0.0, 1.0, LOSS_AVERAGES) * (top - 1.0))
    return jnp.exp(-1.0 / halflife)


def init_loss_buffer() -> dict:
    return {"sum": jnp.zeros((LOSS_AVERAGES,)), "min": jnp.full((LOSS_AVERAGES,), jnp.inf),
            "count": jnp.zeros((), jnp.int32)}


def update_loss_buffer(buf: dict, loss, decays) -> dict:
    """Exponential averages of the loss at every decay and the running minimum of each
    (bias-corrected). A loss above twice the largest average is clipped there first, so one
    spike cannot swamp the averages."""
    loss = jnp.asarray(loss, jnp.float32)
    corrected = buf["sum"] / (1 - decays ** jnp.maximum(buf["count"], 1))
    cap = jnp.where(buf["count"] > 0, 2 * jnp.max(jnp.abs(corrected)), jnp.abs(loss))
    loss = jnp.minimum(loss, cap)
    total = decays * buf["sum"] + (1 - decays) * loss
    count = buf["count"] + 1
    corrected = total / (1 - decays**count)
    return {"sum": total, "min": jnp.minimum(buf["min"], corrected), "count": count}


def loss_features(buf: dict, decays) -> jax.Array:
    """[LOSS_AVERAGES − 1] scale-free features in [−1, 1]: each average's height above its own
    running minimum, relative to the next slower average's height above it (−1: at its best,
    0: level with the slower average); zeros for the first two steps."""
    corrected = buf["sum"] / (1 - decays ** jnp.maximum(buf["count"], 1))
    fast, slow, low = corrected[:-1], corrected[1:], buf["min"][:-1]
    low = jnp.where(jnp.isfinite(low), low, fast)
    feature = jnp.clip((fast - low) / jnp.maximum(slow - low, 1e-8) - 1.0, -1.0, 1.0)
    return jnp.where(buf["count"] <= 2, 0.0, feature)


def celo(hidden: int = 8, layers: int = 2, scheduler_hidden: int = 16,
         momentum_decays: Sequence[float] = af.MOMENTUM_DECAYS,
         rms_decays: Sequence[float] = af.RMS_DECAYS,
         factored_decays: Sequence[float] = af.FACTORED_DECAYS,
         exp_scale: float = 1e-3, step_scale: float = 1e-3,
         feature_semantics: str = "reference") -> UpdateRule:
    """Δθ = −β · exp(s) · u / RMS(u), with u = d · exp(α·m) from a per-parameter MLP (``layers``
    ReLU layers of ``hidden``) on the Adafactor features plus Celo's clip(g, ±0.1) and g/√v, each
    feature divided by its RMS over the tensor; RMS(u) over the tensor (Celo2's per-step output
    normalization: the learned rule picks directions and relative sizes, never a tensor's step
    length). s is the learned scheduler's per-tensor log step size: an LSTM (``scheduler_hidden``
    units, weights shared by all tensors) on the fraction trained, loss-progress features and
    the tensor's parameter and gradient RMS, with Celo's max-pool over tensors mixed into its
    input; its output layer starts at zero, so an untrained rule steps β = ``step_scale`` per
    tensor RMS. Gradients are clipped to ±1000 first. The run length is an input:
    ``lopt.as_optax(..., num_steps=N)``. State: as ``adafac_mlp`` (16 bytes per parameter),
    plus 2 × ``scheduler_hidden`` floats per tensor and the loss averages.
    ``feature_semantics``: as ``adafac_mlp``'s ("lopt_v1": what ``celo_tiny`` was meta-trained
    under)."""
    moms, rmss, facs = af.checked_decays(momentum_decays, rms_decays, factored_decays,
                                         hidden=hidden, layers=layers,
                                         scheduler_hidden=scheduler_hidden)
    af.check_semantics(feature_semantics)
    n_feat = sum(af.group_sizes(len(moms), len(rmss), len(facs), celo=True))
    n_sched = len(FRACTION_CENTRES) + LOSS_AVERAGES - 1 + 2

    def init_meta(key):
        k_mlp, k_in, k_mix, k_lstm = jax.random.split(key, 4)
        lstm = init_lstm_cell(k_lstm, scheduler_hidden, scheduler_hidden)
        return {"mlp": init_mlp(k_mlp, n_feat, hidden, layers),
                "decays": af.decay_offsets(len(moms), len(rmss), len(facs)),
                "scheduler": {"input": init_dense(k_in, n_sched, scheduler_hidden),
                              "mix": init_dense(k_mix, n_sched, scheduler_hidden),
                              "lstm": lstm,
                              "out": init_dense(k_in, scheduler_hidden, 1, scale=0.0)}}

    def init(theta, params, num_steps):
        n = len(jax.tree.leaves(params))
        return {"acc": af.init_accumulators(params, len(moms), len(rmss), len(facs)),
                "count": jnp.zeros((), jnp.int32),
                "num_steps": jnp.asarray(num_steps, jnp.int32),
                "h": jnp.zeros((n, scheduler_hidden)), "c": jnp.zeros((n, scheduler_hidden)),
                "loss": init_loss_buffer()}

    def schedule(theta, state, buf, decays, p_leaves, g_leaves):
        """Per-tensor log step sizes [tensors] and the scheduler's next LSTM state."""
        sched = theta["scheduler"]
        shared = jnp.concatenate([fraction_embedding(state["count"], state["num_steps"]),
                                  loss_features(buf, decays)])
        rms = lambda x: jnp.sqrt(jnp.mean(jnp.square(x.astype(jnp.float32))))
        per_tensor = jnp.stack([log_magnitude(jnp.stack([rms(p), rms(g)]))
                                for p, g in zip(p_leaves, g_leaves)])
        x = jnp.concatenate([jnp.broadcast_to(shared, (len(p_leaves), shared.shape[0])),
                             per_tensor], axis=1)
        mixed = jnp.max(jax.nn.relu(dense(sched["mix"], x)), axis=0, keepdims=True)
        h, c = lstm_cell(sched["lstm"], dense(sched["input"], x) + mixed, state["h"],
                         state["c"])
        return dense(sched["out"], h)[:, 0], h, c

    def update(theta, state, grads, params, loss=None):
        if loss is None:
            raise ValueError("celo needs the training loss (pass value=loss)")
        if isinstance(loss, dict):
            loss = loss["train"]
        d_mom, d_rms, d_fac = af.current_decays(theta, moms, rmss, facs, feature_semantics)
        decays = loss_decays(state["num_steps"])
        buf = update_loss_buffer(state["loss"], loss, decays)
        treedef = jax.tree.structure(params)
        p_leaves = treedef.flatten_up_to(params)
        g_leaves = [jnp.clip(g, -GRAD_CLIP, GRAD_CLIP) for g in treedef.flatten_up_to(grads)]
        acc_leaves = treedef.flatten_up_to(state["acc"])
        log_lr, h, c = schedule(theta, state, buf, decays, p_leaves, g_leaves)

        updates, accs = [], []
        for i, (p, g, acc) in enumerate(zip(p_leaves, g_leaves, acc_leaves)):
            acc = af.update_accumulators(acc, g, d_mom, d_rms, d_fac)
            groups = af.feature_groups(p, g, acc, celo=True, semantics=feature_semantics)
            direction, magnitude = mlp_outputs(theta["mlp"], groups)
            u = direction * jnp.exp(magnitude * exp_scale)
            u = u * jax.lax.rsqrt(jnp.mean(u**2) + 1e-12)
            updates.append((-step_scale * jnp.exp(log_lr[i]) * u).astype(p.dtype))
            accs.append(acc)
        new_state = {"acc": treedef.unflatten(accs), "count": state["count"] + 1,
                     "num_steps": state["num_steps"], "h": h, "c": c, "loss": buf}
        return treedef.unflatten(updates), new_state

    config = {"hidden": hidden, "layers": layers, "scheduler_hidden": scheduler_hidden,
              "momentum_decays": list(moms), "rms_decays": list(rmss),
              "factored_decays": list(facs), "exp_scale": exp_scale, "step_scale": step_scale}
    if feature_semantics != "reference":  # files from before the setting read the same
        config["feature_semantics"] = feature_semantics
    return UpdateRule(init_meta=init_meta, init=init, update=update, name="celo",
                      wants_num_steps=True, config=config)
