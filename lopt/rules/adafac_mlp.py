"""The Adafactor-feature per-parameter MLP (small_fc_lopt / AdafacMLPLOpt; Metz et al. 2022,
"Practical tradeoffs between memory, compute, and performance in learned optimizers")."""
from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp

from lopt.rules import adafactor_features as af
from lopt.rules.base import UpdateRule
from lopt.rules.nets import COLUMNWISE_MIN, apply_mlp, columnwise_network, init_mlp

# tanh(t/τ − 1): the step as bounded features from the first step to 10⁵.
STEP_TIMESCALES = (1, 3, 10, 30, 100, 300, 1000, 3000, 10000, 30000, 100000)


def step_embedding(count) -> jax.Array:
    """tanh(t/τ − 1) for the timescales τ of ``STEP_TIMESCALES``."""
    t = jnp.asarray(count, jnp.float32)
    return jnp.tanh(t / jnp.asarray(STEP_TIMESCALES, jnp.float32) - 1.0)


INITS = af.INITS


def plant_identity(layers: list, feature: int) -> list:
    """The MLP with hidden units 0 and 1 carrying relu(x) and relu(−x) of input ``feature``
    through every layer and the first output reading their difference, x itself; the other
    units keep their random weights but are cut off from output 0."""
    out = []
    for i, layer in enumerate(layers):
        w, b = layer["w"], layer["b"]
        last = i == len(layers) - 1
        if i == 0:
            w = w.at[:, :2].set(0.0).at[feature, 0].set(1.0).at[feature, 1].set(-1.0)
            b = b.at[:2].set(0.0)
        elif not last:
            w = w.at[:, :2].set(0.0).at[:2, :].set(0.0).at[0, 0].set(1.0).at[1, 1].set(1.0)
            b = b.at[:2].set(0.0)
        else:
            w = w.at[:, 0].set(0.0).at[0, 0].set(1.0).at[1, 0].set(-1.0)
            b = b.at[0].set(0.0)
        out.append({"w": w, "b": b})
    return out


def mlp_outputs(mlp: list, groups: list, context=0.0, eps: float = 1e-5) -> tuple:
    """(d, m): outputs 0 and 1 of the per-parameter MLP on the groups, each normalized by its
    RMS over the tensor (``af.second_moment_normalize``), ``context`` added to the first
    layer's bias; from ``COLUMNWISE_MIN`` coordinates column by column
    (``nets.columnwise_network``: equal up to float reassociation; with it the update of a
    2.1M-parameter pytree went 61 -> 36 ms on CPU, benchmarks/perf)."""
    if math.prod(groups[0].shape[:-1]) < COLUMNWISE_MIN:
        out = apply_mlp(mlp, [af.second_moment_normalize(x, eps) for x in groups], context)
        return out[..., 0], out[..., 1]
    terms, w = [], mlp[0]["w"]
    for x in groups:
        axes = tuple(range(x.ndim - 1))
        for j in range(x.shape[-1]):
            col = x[..., j]
            scale = jax.lax.rsqrt(jnp.mean(jnp.square(col), axis=axes) + eps)
            terms.append((col * scale, w[len(terms)]))
    direction, magnitude = columnwise_network(terms, mlp[0]["b"] + context, mlp[1:])
    return direction, magnitude


def adafac_mlp(hidden: int = 4, layers: int = 2,
               momentum_decays: Sequence[float] = af.MOMENTUM_DECAYS,
               rms_decays: Sequence[float] = af.RMS_DECAYS,
               factored_decays: Sequence[float] = af.FACTORED_DECAYS,
               exp_scale: float = 1e-3, step_scale: float = 1e-3,
               init: str = "random", feature_semantics: str = "reference",
               clip_momentum_decays: bool = True) -> UpdateRule:
    """Δθ = −d · exp(α·m) · β, (d, m) the outputs of a per-parameter MLP (``layers`` ReLU layers
    of ``hidden``; 2 × 4 in the paper) on ``adafactor_features.feature_groups`` — each feature
    divided by its RMS over the tensor — and tanh embeddings of the step. The momentum, RMS and
    factored decays are meta-learned as offsets in log(1 − β)/10 (zeros: the initial decays).
    α = ``exp_scale``, β = ``step_scale`` (10⁻³ each, as in the paper) keep early steps small.
    State: 3 momenta + 1 second moment per parameter, and per matrix a row and column moment
    at 3 decays: 16 bytes per parameter (float32) plus O(rows + columns).

    ``init``: "random" (the paper's) or "momentum" — the MLP starts as exactly d = the
    normalized m/√v feature of the first momentum decay (``plant_identity``), so the untrained
    rule is Adam-like with step β per tensor RMS instead of a random walk that meta-training
    first has to learn to stop.

    ``feature_semantics``: "reference" (learned_optimization's) or "lopt_v1" (what
    ``adafac_tiny`` was meta-trained under; ``adafactor_features.FEATURE_SEMANTICS``).
    ``clip_momentum_decays``: lopt's meta-training clips the momentum decays to [0, 1] too
    (True, the default: a decay offset past 1 − β₀ = e¹⁰ᵟ cannot make a momentum grow without
    bound); files imported from learned_optimization say False and compute as it does."""
    moms, rmss, facs = af.checked_decays(momentum_decays, rms_decays, factored_decays,
                                         hidden=hidden, layers=layers)
    af.check_init(init, hidden)
    af.check_semantics(feature_semantics)
    sizes = af.group_sizes(len(moms), len(rmss), len(facs))
    n_feat = sum(sizes)
    # m/√v at the first momentum decay: after g, p, the momenta and the second moments.
    momentum_feature = 2 + len(moms) + len(rmss)

    def init_meta(key):
        mlp = init_mlp(key, n_feat + len(STEP_TIMESCALES), hidden, layers)
        if init == "momentum":
            mlp = plant_identity(mlp, momentum_feature)
        return {"mlp": mlp, "decays": af.decay_offsets(len(moms), len(rmss), len(facs))}

    def init_state(theta, params):
        return {"acc": af.init_accumulators(params, len(moms), len(rmss), len(facs)),
                "count": jnp.zeros((), jnp.int32)}

    def update(theta, state, grads, params, loss=None):
        del loss
        d_mom, d_rms, d_fac = af.current_decays(theta, moms, rmss, facs, feature_semantics,
                                                clip_momentum_decays)
        mlp = theta["mlp"]
        # The step embedding is the same for every coordinate: its share of the first layer
        # is one vector per step, folded into the bias.
        context = step_embedding(state["count"]) @ mlp[0]["w"][n_feat:]

        def leaf(p, g, acc):
            acc = af.update_accumulators(acc, g, d_mom, d_rms, d_fac)
            groups = af.feature_groups(p, g, acc, semantics=feature_semantics)
            direction, magnitude = mlp_outputs(mlp, groups, context)
            step = direction * jnp.exp(magnitude * exp_scale) * step_scale
            return -step.astype(p.dtype), acc

        pairs = jax.tree.map(leaf, params, grads, state["acc"])
        treedef = jax.tree.structure(params)
        flat = treedef.flatten_up_to(pairs)
        updates = treedef.unflatten([u for u, _ in flat])
        acc = treedef.unflatten([a for _, a in flat])
        return updates, {"acc": acc, "count": state["count"] + 1}

    config = {"hidden": hidden, "layers": layers, "momentum_decays": list(moms),
              "rms_decays": list(rmss), "factored_decays": list(facs), "exp_scale": exp_scale,
              "step_scale": step_scale, "init": init}
    if feature_semantics != "reference":  # files from before the setting read the same
        config["feature_semantics"] = feature_semantics
    if not clip_momentum_decays:
        config["clip_momentum_decays"] = False
    return UpdateRule(init_meta=init_meta, init=init_state, update=update, name="adafac_mlp",
                      config=config)
