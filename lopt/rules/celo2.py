"""Celo2 and Celo2-base (Moudgil et al. 2026, "Celo2", arXiv 2602.19142): a per-parameter
split-input MLP on momenta, an RMS and Adafactor features, each normalized over the tensor's
last two axes; the step orthogonalized by Muon's Newton–Schulz iteration (Celo2) and
RMS-normalized. No learned schedule: the learning rate is the user's.

Equal to ``celo.optimizers.celo2_optax.scale_by_celo2`` (amoudgl/celo at 66d9761) to float32
rounding; tests/rules/test_conformance.py checks it on a fixture that code wrote.
"""
from __future__ import annotations

import math
from typing import Sequence

import jax
import jax.numpy as jnp

from lopt.rules import adafactor_features as af
from lopt.rules.base import UpdateRule, state_dtype
from lopt.rules.nets import COLUMNWISE_MIN, columnwise_network

MOMENTUM_DECAYS = (0.9, 0.99, 0.999)
RMS_DECAYS = (0.95,)
FACTORED_DECAYS = (0.9, 0.99, 0.999)
# Muon's quintic Newton–Schulz coefficients (Jordan et al. 2024), 5 iterations.
NS_COEFFS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5
GRAD_CLIP = 1000.0
OUTPUTS = 3  # direction, magnitude (scaled by exp_scale = 0: unused) and a spare, as released


def group_sizes(n_mom: int, n_rms: int, n_fac: int, matrix: bool) -> list:
    """Widths of ``feature_groups``: nine groups for every tensor, five more for matrices."""
    sizes = [1, 1, 1, n_mom, n_rms, n_mom, n_rms, n_fac, n_rms]
    return sizes + ([n_fac, n_fac, n_fac, n_fac, n_mom] if matrix else [])


def feature_groups(p, g, acc, broadcast: bool = True) -> list:
    """g, clip(g, ±0.1), p, the momenta m, the RMS v, m/√(v + 10⁻⁸), 1/√(v + 10⁻⁸), the
    Adafactor-preconditioned g (``af.factored_features``), g/√(v + 10⁻⁸); for tensors of two or
    more axes also the row and column moments, 1/√(· + 10⁻⁸) of each, and the preconditioned
    momenta. Each [..., k]; without ``broadcast`` the four row and column groups keep size 1
    on the axis they are constant along."""
    m, v = acc["m"], acc["v"]
    gx = g[..., None].astype(m.dtype)
    precondition, row, col = af.factored_features(acc, p.shape)
    rs = jax.lax.rsqrt(v + 1e-8)
    groups = [gx, jnp.clip(gx, -0.1, 0.1), p.astype(m.dtype)[..., None], m, v, m * rs, rs,
              gx * precondition, gx * rs]
    if p.ndim >= 2:
        if not broadcast:
            row_axis, col_axis = af.factored_dims(p.shape)
            row = jnp.expand_dims(acc["row"], col_axis)
            col = jnp.expand_dims(acc["col"], row_axis)
        groups += [row, col, jax.lax.rsqrt(row + 1e-8), jax.lax.rsqrt(col + 1e-8),
                   m * precondition]
    return groups


def normalize_last_two_axes(x, ndim: int, eps: float = 1e-9):
    """x / √(mean of x² over the tensor's last two axes (its only axis for a vector) + ε)."""
    axes = tuple(range(ndim))[-2:]
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=axes, keepdims=True) + eps)


def orthogonalize(step, ns_steps: int = NS_STEPS):
    """Muon's Newton–Schulz orthogonalization (Jordan et al. 2024) of every matrix X in the
    last two axes (leading axes are a batch): X ← X / (‖X‖_F + 10⁻⁸), then ``ns_steps`` times
    X ← aX + (bA + cA²)X with A = XXᵀ, on the wide orientation. optax keeps the same iteration
    private to its Muon (optax.contrib._muon), so it is written out here."""
    a, b, c = NS_COEFFS
    wide = step.shape[-2] <= step.shape[-1]
    x = step if wide else jnp.swapaxes(step, -2, -1)
    x = x / (jnp.linalg.norm(x, axis=(-2, -1), keepdims=True) + 1e-8)
    for _ in range(ns_steps):
        gram = x @ jnp.swapaxes(x, -2, -1)
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x if wide else jnp.swapaxes(x, -2, -1)


def init_split_mlp(key, sizes: Sequence[int], hidden: int, layers: int) -> dict:
    """The split-input MLP: one first-layer weight per feature group (so vectors, which lack
    the matrix groups, use the first nine), ``layers`` ReLU layers of ``hidden``, 3 outputs.
    Truncated-normal weights of standard deviation 1/√fan-in, zero biases (haiku's)."""
    fan_in = sum(sizes)
    widths = [hidden] * layers + [OUTPUTS]
    keys = jax.random.split(key, len(sizes) + len(widths))
    # haiku divides by the standard deviation of a unit normal truncated at ±2
    normal = lambda k, shape, n: (jax.random.truncated_normal(k, -2.0, 2.0, shape)
                                  / 0.87962566 / jnp.sqrt(n))
    first = [normal(keys[i], (s, hidden), fan_in) for i, s in enumerate(sizes)]
    rest, last = [], hidden
    for j, width in enumerate(widths[1:]):
        rest.append({"w": normal(keys[len(sizes) + j], (last, width), last),
                     "b": jnp.zeros((width,))})
        last = width
    return {"first": {"w": first, "b": jnp.zeros((hidden,))}, "layers": rest}


def apply_split_mlp(mlp: dict, groups: list) -> jax.Array:
    """ReLU MLP whose first layer sums one matmul per feature group, computed as one matmul of
    the concatenated groups with the stacked weights: XLA:CPU runs a product whose contraction
    is 1 or 3 wide about 15x slower per element than one 30 wide (measured at 200k
    coordinates), and the sum is the same up to float reassociation."""
    x = jnp.concatenate(groups, axis=-1)
    w = jnp.concatenate(mlp["first"]["w"][:len(groups)], axis=0)
    return _hidden_layers(mlp, x @ w + mlp["first"]["b"])


def _hidden_layers(mlp: dict, first):
    out = first
    for layer in mlp["layers"]:
        out = jax.nn.relu(out) @ layer["w"] + layer["b"]
    return out


def apply_normalized_split_mlp(mlp: dict, groups: list, ndim: int, eps: float = 1e-9):
    """``apply_split_mlp`` of the groups each normalized by ``normalize_last_two_axes``, computed
    without writing the normalized features out: for the groups of the tensor's full shape the
    normalization is folded into the first layer, x·diag(s)·W = x·(s ⊙ W) with s the per-column
    1/√(mean x² + ε); a group constant along an axis (``feature_groups(broadcast=False)``: a
    row or column moment) has the same mean square as its broadcast, so it is normalized and
    multiplied at its own size and its product broadcast. Equal to normalizing the broadcast
    groups first up to float reassociation; on a 3×256 MLP the update takes about half the
    time on CPU."""
    axes = tuple(range(ndim))[-2:]
    full = jnp.broadcast_shapes(*(x.shape[:-1] for x in groups))
    w_groups = mlp["first"]["w"][:len(groups)]
    wide = [i for i, x in enumerate(groups) if x.shape[:-1] == full]
    x = jnp.concatenate([groups[i] for i in wide], axis=-1)
    w = jnp.concatenate([w_groups[i] for i in wide], axis=0)
    scale = jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=axes) + eps)  # [*lead, features]
    if ndim <= 2:
        first = x @ (scale[:, None] * w)
    else:  # one scale per leading index (a conv kernel's spatial position): a batched product
        lead, inner = x.shape[:ndim - 2], x.shape[ndim - 2:ndim]
        rows = x.reshape(lead + (inner[0] * inner[1], x.shape[-1]))
        first = (rows @ (scale[..., :, None] * w)).reshape(x.shape[:-1] + (w.shape[1],))
    for i, group in enumerate(groups):
        if i not in wide:
            first = first + normalize_last_two_axes(group, ndim, eps) @ w_groups[i]
    return _hidden_layers(mlp, first + mlp["first"]["b"])


def mlp_outputs(mlp: dict, groups: list, ndim: int, eps: float = 1e-9,
                outputs: int = 2) -> tuple:
    """(direction, magnitude): outputs 0 and 1 of the split MLP on the groups, each normalized
    by ``normalize_last_two_axes`` (output 2, the released network's spare, is never read);
    ``outputs=1``: (direction,) alone."""
    shape = jnp.broadcast_shapes(*(x.shape[:-1] for x in groups))
    if math.prod(shape) >= COLUMNWISE_MIN:
        return _columnwise_outputs(mlp, groups, ndim, eps, outputs)
    out = apply_normalized_split_mlp(mlp, groups, ndim, eps)
    return tuple(out[..., i] for i in range(outputs))


def _columnwise_outputs(mlp: dict, groups: list, ndim: int, eps: float,
                        outputs: int = 2) -> tuple:
    """``mlp_outputs`` with every feature column and every hidden unit its own array, so XLA
    fuses the whole per-coordinate network into a few loops that read the state once instead
    of writing out the [..., 30] features and running matmuls 8 and 3 wide. A column
    constant along an axis (a row or column moment) keeps its size there until a sum
    broadcasts it; its mean square is its broadcast's."""
    axes = tuple(range(ndim))[-2:]
    terms = []  # (normalized column, its first-layer weights)
    for x, w in zip(groups, mlp["first"]["w"]):
        for j in range(x.shape[-1]):
            col = x[..., j]
            scale = jax.lax.rsqrt(jnp.mean(jnp.square(col), axis=axes, keepdims=True) + eps)
            terms.append((col * scale, w[j]))
    return tuple(columnwise_network(terms, mlp["first"]["b"], mlp["layers"], outputs))


INITS = af.INITS + ("adam",)
MOMENTUM_GROUP = 3  # the momenta in ``feature_groups``; column 0 is the 0.9 one
ADAM_GROUP = 5  # m/√(v + 10⁻⁸); column 0 pairs the 0.9 momentum with the RMS
PLANTED = {"momentum": MOMENTUM_GROUP, "adam": ADAM_GROUP}
MAGNITUDES = ("rms", "adam")
SCHEDULES = ("constant", "cosine")
WARMUP_FRACTION = 20  # the cosine schedule warms up over the first 1/20 of the run
ADAM_EPS = 1e-8


def plant_momentum(mlp: dict, group: int = MOMENTUM_GROUP) -> dict:
    """The split MLP with hidden units 0 and 1 carrying relu(x) and relu(−x) of column 0 of
    feature ``group`` (the first momentum by default) through every layer and output 0 reading
    their difference, x itself: Celo2 then steps along the normalized momentum, orthogonalized
    — Muon's update (with ``ADAM_GROUP``: along Adam's direction m/√v). The other units keep
    their random weights, cut off from output 0."""
    first = [w.at[:, :2].set(0.0) for w in mlp["first"]["w"]]
    first[group] = first[group].at[0, 0].set(1.0).at[0, 1].set(-1.0)
    out = {"first": {"w": first, "b": mlp["first"]["b"].at[:2].set(0.0)}, "layers": []}
    for i, layer in enumerate(mlp["layers"]):
        w, b = layer["w"], layer["b"]
        if i < len(mlp["layers"]) - 1:
            w = w.at[:, :2].set(0.0).at[:2, :].set(0.0).at[0, 0].set(1.0).at[1, 1].set(1.0)
            b = b.at[:2].set(0.0)
        else:
            w = w.at[:, 0].set(0.0).at[0, 0].set(1.0).at[1, 0].set(-1.0)
            b = b.at[0].set(0.0)
        out["layers"].append({"w": w, "b": b})
    return out


def adam_rms(m, v, b1, b2, count, ndim: int):
    """The RMS over the tensor's last two axes of Adam's step m̂/(√v̂ + 10⁻⁸) (Kingma & Ba 2015,
    Algorithm 1) built from the rule's first momentum and first RMS, bias-corrected at step
    ``count`` + 1 (``m``, ``v`` at decays ``b1``, ``b2``): the per-tensor step magnitude that
    ``magnitude="adam"`` grafts onto the learned direction (Agarwal et al. 2020,
    "Disentangling adaptive gradient methods from learning rates", grafting)."""
    t = (count + 1).astype(jnp.float32)
    step = _unfused((m / (1 - b1**t)) / (jnp.sqrt(v / (1 - b2**t)) + ADAM_EPS))
    axes = tuple(range(ndim))[-2:]
    return jnp.sqrt(jnp.mean(jnp.square(step), axis=axes, keepdims=True))


def _unfused(x):
    """x unchanged (rounding to its own dtype's format is exact), computed apart from the
    reduction that reads it: XLA:CPU's YNNPACK fusion of a square root chain into a reduction
    over [..., 1]-shaped state runs about 10x slower than the two apart (measured on 256 x 256,
    jax 0.10)."""
    info = jnp.finfo(x.dtype)
    return jax.lax.reduce_precision(x, exponent_bits=info.nexp, mantissa_bits=info.nmant)


def warmup_cosine(count, num_steps):
    """The step multiplier at step ``count`` (from 0) of a ``num_steps`` run: linear from 0 over
    w = max(1, num_steps // 20) steps, then cosine-decayed to 0 at ``num_steps`` (and 0 past
    it): ``optax.warmup_cosine_decay_schedule(0, 1, w, num_steps, 0)`` with a traced length."""
    t = jnp.asarray(count, jnp.float32)
    total = jnp.asarray(num_steps, jnp.float32)
    warm = jnp.maximum(1.0, jnp.floor(total / WARMUP_FRACTION))
    span = jnp.maximum(total - warm, 1.0)
    decay = 0.5 * (1.0 + jnp.cos(jnp.pi * jnp.clip(t - warm, 0.0, span) / span))
    return jnp.where(t < warm, t / warm, decay)


def celo2(hidden: int = 8, layers: int = 2, orthogonalize_matrices: bool = True,
          step_scale: float = 1e-3, exp_scale: float = 0.0,
          momentum_decays: Sequence[float] = MOMENTUM_DECAYS,
          rms_decays: Sequence[float] = RMS_DECAYS,
          factored_decays: Sequence[float] = FACTORED_DECAYS, init: str = "random",
          magnitude: str = "rms", schedule: str = "constant",
          orthogonalize_max_dim: int | None = None, weight_decay: float = 0.0,
          name: str = "celo2") -> UpdateRule:
    """Δθ = −β · s, s = RMS-normalize(NS₅(d · exp(α·m))) per tensor, (d, m) from the split-input
    MLP (``layers`` ReLU layers of ``hidden``: 2 × 8 as released) on ``feature_groups`` of the
    ±1000-clipped gradient, each normalized over the tensor's last two axes (ε 10⁻⁹). NS₅:
    Muon's Newton–Schulz orthogonalization of the last two axes (tensors of ≥ 2 axes; off for
    Celo2-base). Decays fixed at momenta (0.9, 0.99, 0.999), RMS 0.95, Adafactor (0.9, 0.99,
    0.999); the RMS and factored ones clipped to [0, 1], no bias correction. α = ``exp_scale``
    (0 as released: the magnitude output is unused). β = ``step_scale`` is the step size a
    rule needs in lopt's convention (updates are added); the released optimizer has none:
    ``lopt.scale_by_celo2`` gives s itself (β = −1), for optax's learning-rate transformations.
    ``init``: "random" (the reference's), "momentum" (``plant_momentum``: the untrained rule
    is Muon with RMS-normalized steps, a start that meta-training refines) or "adam" (the
    direction of Adam with β = (first momentum decay, first RMS decay)).
    ``magnitude``: "rms" (Celo2's: every tensor's step has RMS β whatever its gradients say)
    or "adam": the normalized step times ``adam_rms``, the RMS over the same axes of Adam's
    bias-corrected step m̂/(√v̂ + 10⁻⁸) from the rule's first momentum and RMS (grafting,
    Agarwal et al. 2020), so a step shrinks as Adam's does when the gradients turn to noise;
    with init "adam" and no orthogonalization the untrained rule is Adam at learning rate β
    (β = 0.9, 0.95; its direction reads m/√(v + 10⁻⁸), so it differs from Adam's where a
    gradient element is near 10⁻⁴ or below).
    ``schedule``: "constant" (Celo2's: the schedule is the user's) or "cosine": every step times
    ``warmup_cosine`` of the run's progress, so the rule needs the run length
    (``lopt.as_optax(..., num_steps=N)``; meta-training tells each run its horizon).
    ``orthogonalize_max_dim`` D: Newton–Schulz only on matrices whose shorter side (of the
    last two axes) is at most D, where it costs about what the per-coordinate network does
    (its FLOPs per coordinate grow with that side: 5 iterations of three products); wider
    ones step along the normalized direction, as Celo2-base. None: every matrix.
    ``weight_decay`` λ: decoupled weight decay inside the rule (Loshchilov & Hutter 2019), the
    step −β (s + λθ), times the schedule when there is one, so the decay follows the step
    size as AdamW's follows its learning rate.
    State: 3 momenta + 1 RMS per parameter (float32) and per matrix O(rows + columns)."""
    moms, rmss, facs = af.checked_decays(momentum_decays, rms_decays, factored_decays,
                                         hidden=hidden, layers=layers)
    if init not in INITS:
        raise ValueError(f"init must be one of {', '.join(INITS)}; got {init!r}")
    if init in PLANTED and hidden < 2:
        raise ValueError(f"init {init!r} needs hidden >= 2; got {hidden}")
    if magnitude not in MAGNITUDES:
        raise ValueError(f"magnitude must be one of {', '.join(MAGNITUDES)}; got {magnitude!r}")
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}; got {schedule!r}")
    if orthogonalize_max_dim is not None and (isinstance(orthogonalize_max_dim, bool) or not
                                              isinstance(orthogonalize_max_dim, int)
                                              or orthogonalize_max_dim < 0):
        raise ValueError("orthogonalize_max_dim must be a non-negative integer or None; got "
                         f"{orthogonalize_max_dim!r}")
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) \
            or not math.isfinite(weight_decay) or weight_decay < 0:
        raise ValueError(f"weight_decay must be a finite number >= 0; got {weight_decay!r}")
    n = (len(moms), len(rmss), len(facs))

    def init_meta(key):
        mlp = init_split_mlp(key, group_sizes(*n, matrix=True), hidden, layers)
        return plant_momentum(mlp, PLANTED[init]) if init in PLANTED else mlp

    def init_state(theta, params, *num_steps):
        state = {"acc": af.init_accumulators(params, *n), "count": jnp.zeros((), jnp.int32)}
        if schedule == "cosine":
            state["num_steps"] = jnp.asarray(num_steps[0], jnp.int32)
        return state

    def update(theta, state, grads, params, loss=None):
        del loss
        decays = [jnp.asarray(d, jnp.float32) for d in (moms, rmss, facs)]

        def leaf(p, g, acc):
            g = jnp.clip(g.astype(state_dtype(g.dtype)), -GRAD_CLIP, GRAD_CLIP)
            acc = af.update_accumulators(acc, g, *decays)
            if p.ndim == 0:  # as the reference: a scalar is a vector of one
                expand = lambda x: x[None]
                p1, g1, acc1 = p[None], g[None], jax.tree.map(expand, acc)
            else:
                p1, g1, acc1 = p, g, acc
            groups = feature_groups(p1, g1, acc1, broadcast=False)
            if exp_scale == 0.0:  # exp(0 · m) = 1: the released rule's unused output
                step, = mlp_outputs(theta, groups, p1.ndim, outputs=1)
            else:
                direction, log_size = mlp_outputs(theta, groups, p1.ndim)
                step = direction * jnp.exp(log_size * exp_scale)
            if orthogonalize_matrices and p1.ndim >= 2 and (
                    orthogonalize_max_dim is None or min(p1.shape[-2:]) <= orthogonalize_max_dim):
                step = orthogonalize(step)
            step = normalize_last_two_axes(step, p1.ndim)
            if magnitude == "adam":
                step = step * adam_rms(acc1["m"][..., 0], acc1["v"][..., 0], decays[0][0],
                                       decays[1][0], state["count"], p1.ndim)
            step = step.reshape(p.shape)
            if weight_decay:
                step = step + weight_decay * p.astype(step.dtype)
            return (-step_scale * step).astype(p.dtype), acc

        pairs = jax.tree.map(leaf, params, grads, state["acc"])
        treedef = jax.tree.structure(params)
        flat = treedef.flatten_up_to(pairs)
        updates = treedef.unflatten([u for u, _ in flat])
        if schedule == "cosine":
            factor = warmup_cosine(state["count"], state["num_steps"])
            updates = jax.tree.map(lambda u: (u * factor).astype(u.dtype), updates)
        return updates, {**state, "acc": treedef.unflatten([a for _, a in flat]),
                         "count": state["count"] + 1}

    config = {"hidden": hidden, "layers": layers, "step_scale": step_scale,
              "exp_scale": exp_scale, "momentum_decays": list(moms), "rms_decays": list(rmss),
              "factored_decays": list(facs), "init": init}
    if magnitude != "rms":  # so files written before the setting existed keep their header
        config["magnitude"] = magnitude
    if schedule != "constant":
        config["schedule"] = schedule
    if weight_decay:
        config["weight_decay"] = weight_decay
    if name == "celo2":
        config["orthogonalize_matrices"] = orthogonalize_matrices
        if orthogonalize_max_dim is not None:
            config["orthogonalize_max_dim"] = orthogonalize_max_dim
    return UpdateRule(init_meta=init_meta, init=init_state, update=update, name=name,
                      config=config, wants_num_steps=schedule == "cosine")


def celo2_base(hidden: int = 8, layers: int = 2, step_scale: float = 1e-3,
               exp_scale: float = 0.0, momentum_decays: Sequence[float] = MOMENTUM_DECAYS,
               rms_decays: Sequence[float] = RMS_DECAYS,
               factored_decays: Sequence[float] = FACTORED_DECAYS,
               init: str = "random", magnitude: str = "rms",
               schedule: str = "constant", weight_decay: float = 0.0) -> UpdateRule:
    """Celo2-base: ``celo2`` without the Newton–Schulz orthogonalization (with init
    "momentum": RMS-normalized momentum per tensor)."""
    return celo2(hidden, layers, False, step_scale, exp_scale, momentum_decays, rms_decays,
                 factored_decays, init, magnitude, schedule, weight_decay=weight_decay,
                 name="celo2_base")
