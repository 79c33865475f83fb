"""Accumulators and per-parameter features of the Adafactor-feature MLP optimizers
(small_fc_lopt / AdafacMLPLOpt, Metz et al. 2022 "Practical tradeoffs"; Celo, Moudgil et al.
2025): momenta, second moments and Adafactor's factored second moments (Shazeer & Stern
2018) at several decays, learned as offsets of their decays.

Every feature is a [..., k] array over one tensor; the networks see each feature column
divided by its root mean square over the tensor (``second_moment_normalize``), so that no
tensor's scale reaches them except through the ratios the features encode.
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from lopt.rules.base import constant_dtype, state_dtype

MOMENTUM_DECAYS = (0.9, 0.99, 0.999)
RMS_DECAYS = (0.999,)
FACTORED_DECAYS = (0.9, 0.99, 0.999)
# A decay β is learned as the offset δ in β = 1 − exp(10·(log(1 − β₀)/10 + δ)): δ = 0 is the
# initial decay and one unit of δ moves (1 − β) by a factor e¹⁰.
DECAY_SCALE = 10.0
# How the features are computed, stored in a rule file's config so that a file computes the way
# it was made: "reference" (learned_optimization's epsilons and clamps, decays clipped to
# [0, 1]) or "lopt_v1" (lopt before 2026-12-01, under which celo_tiny and adafac_tiny were
# meta-trained: v̂ = R·C/(mean R + 10⁻³⁰) under rsqrt(· + 10⁻³⁰), a vector's full moment likewise,
# decays unclipped).
FEATURE_SEMANTICS = ("reference", "lopt_v1")


def check_semantics(semantics: str) -> None:
    """One line unless ``semantics`` is one of ``FEATURE_SEMANTICS``."""
    if semantics not in FEATURE_SEMANTICS:
        raise ValueError(f"feature_semantics must be one of {', '.join(FEATURE_SEMANTICS)}; "
                         f"got {semantics!r}")


def decays_from_offsets(initial: Sequence[float], offset, clip: bool = True) -> jax.Array:
    """β = clip(1 − (1 − β₀)·exp(10·δ), 0, 1): the decays at learned offsets δ (zeros: the
    initial ones). The reference clips its RMS and factored decays to [0, 1] (a negative decay
    makes a second moment negative and its inverse square root NaN); lopt clips the momentum
    decays too, which changes nothing while they lie in [0, 1] and keeps a momentum from
    growing without bound when an offset walks past 1 − β₀ = e¹⁰ᵟ."""
    base = jnp.log1p(-jnp.asarray(initial, constant_dtype())) / DECAY_SCALE
    decays = 1.0 - jnp.exp((base + offset) * DECAY_SCALE)
    return jnp.clip(decays, 0.0, 1.0) if clip else decays


def decay_offsets(n_mom: int, n_rms: int, n_fac: int) -> dict:
    """Zero offsets (the initial decays) for every momentum, RMS and factored accumulator."""
    return {"momentum": jnp.zeros((n_mom,)), "rms": jnp.zeros((n_rms,)),
            "factored": jnp.zeros((n_fac,))}


def current_decays(theta, momentum_decays, rms_decays, factored_decays,
                   semantics: str = "reference", clip_momentum: bool = True) -> tuple:
    """The decays theta's offsets make of the initial ones: (momentum, rms, factored), clipped
    to [0, 1] except under the "lopt_v1" semantics, and the momentum ones only with
    ``clip_momentum`` (learned_optimization clips its RMS and factored decays, not these)."""
    d, clip = theta["decays"], semantics == "reference"
    return (decays_from_offsets(momentum_decays, d["momentum"], clip and clip_momentum),
            decays_from_offsets(rms_decays, d["rms"], clip),
            decays_from_offsets(factored_decays, d["factored"], clip))


def factored_dims(shape: Sequence[int]) -> Optional[Tuple[int, int]]:
    """The two largest axes (row axis, column axis) of a tensor with at least two axes, over
    which Adafactor keeps row and column second moments; None for scalars and vectors."""
    if len(shape) < 2:
        return None
    order = np.argsort(np.asarray(shape), kind="stable")
    return int(order[-2]), int(order[-1])


def _factored_shapes(shape, k):
    dims = factored_dims(shape)
    if dims is None:
        return None
    row_axis, col_axis = dims
    rows = tuple(s for i, s in enumerate(shape) if i != col_axis)
    cols = tuple(s for i, s in enumerate(shape) if i != row_axis)
    return rows + (k,), cols + (k,)


def init_accumulators(params, n_mom: int, n_rms: int, n_fac: int) -> dict:
    """Zero accumulators for every leaf: momenta [..., n_mom], second moments [..., n_rms] and
    Adafactor's row and column second moments (a full one, [..., n_fac], for vectors), in
    float32 at least whatever the parameters' dtype (``state_dtype``)."""
    def leaf(p):
        dtype = state_dtype(p.dtype)
        acc = {"m": jnp.zeros(p.shape + (n_mom,), dtype),
               "v": jnp.zeros(p.shape + (n_rms,), dtype)}
        shapes = _factored_shapes(p.shape, n_fac)
        if shapes is None:
            acc["full"] = jnp.zeros(p.shape + (n_fac,), dtype)
        else:
            acc["row"] = jnp.zeros(shapes[0], dtype)
            acc["col"] = jnp.zeros(shapes[1], dtype)
        return acc

    return jax.tree.map(leaf, params)


def update_accumulators(acc: dict, g, mom_decays, rms_decays, fac_decays) -> dict:
    """One step of every accumulator of one leaf: m ← βm + (1 − β)g, v ← βv + (1 − β)g², and
    the factored moments as exponential averages of g² + 10⁻³⁰ over columns (row moment) and
    over rows (column moment), Adafactor's eq. (9)."""
    gx = g[..., None].astype(acc["m"].dtype)
    new = {"m": mom_decays * acc["m"] + (1 - mom_decays) * gx,
           "v": rms_decays * acc["v"] + (1 - rms_decays) * gx**2}
    g2 = gx**2 + 1e-30
    if "full" in acc:
        new["full"] = fac_decays * acc["full"] + (1 - fac_decays) * g2
    else:
        row_axis, col_axis = factored_dims(g.shape)
        new["row"] = fac_decays * acc["row"] + (1 - fac_decays) * jnp.mean(g2, axis=col_axis)
        new["col"] = fac_decays * acc["col"] + (1 - fac_decays) * jnp.mean(g2, axis=row_axis)
    return new


def safe_rsqrt(x):
    """1/√max(x, 10⁻⁹): the reference's inverse square root of a second moment (a moment that
    underflows to 0 gives 10^4.5, not an infinity)."""
    return jax.lax.rsqrt(jnp.maximum(x, 1e-9))


def factored_features(acc: dict, shape) -> Tuple[jax.Array, jax.Array, jax.Array]:
    """(preconditioner, row feature, column feature), each [..., n_fac] at every coordinate.

    Adafactor's rank-1 estimate v̂ = R C / mean(R) (eq. 9) enters as its inverse square root,
    computed as the reference does: rsqrt(max(R / (mean(R) + 10⁻⁹), 10⁻⁹)) ·
    rsqrt(max(C, 10⁻⁹)). R and C are broadcast along the axis they average over. A vector's
    ``full`` moment v stands in for R and C, with preconditioner rsqrt(max(v + 10⁻⁹, 10⁻⁹))."""
    if "full" in acc:
        return safe_rsqrt(acc["full"] + 1e-9), acc["full"], acc["full"]
    row_axis, col_axis = factored_dims(shape)
    row = jnp.expand_dims(acc["row"], col_axis)
    col = jnp.expand_dims(acc["col"], row_axis)
    row_mean = jnp.mean(row, axis=row_axis, keepdims=True)
    precondition = safe_rsqrt(row / (row_mean + 1e-9)) * safe_rsqrt(col)
    full = shape + (row.shape[-1],)
    return (jnp.broadcast_to(precondition, full), jnp.broadcast_to(row, full),
            jnp.broadcast_to(col, full))


def factored_features_v1(acc: dict, shape) -> Tuple[jax.Array, jax.Array, jax.Array]:
    """``factored_features`` under the "lopt_v1" semantics: the preconditioner
    rsqrt(v̂ + 10⁻³⁰) with v̂ = R·C/(mean(R) + 10⁻³⁰), and for a vector rsqrt(v + 10⁻³⁰)."""
    if "full" in acc:
        return jax.lax.rsqrt(acc["full"] + 1e-30), acc["full"], acc["full"]
    row_axis, col_axis = factored_dims(shape)
    row = jnp.expand_dims(acc["row"], col_axis)
    col = jnp.expand_dims(acc["col"], row_axis)
    v_hat = row * col / (jnp.mean(row, axis=row_axis, keepdims=True) + 1e-30)
    full = shape + (row.shape[-1],)
    return (jnp.broadcast_to(jax.lax.rsqrt(v_hat + 1e-30), full), jnp.broadcast_to(row, full),
            jnp.broadcast_to(col, full))


def feature_groups(p, g, acc: dict, celo: bool = False, semantics: str = "reference") -> list:
    """The per-parameter features of one leaf as a list of [..., k] groups, with the
    reference's epsilons (learned_optimization's ``adafac_mlp_lopt._mod``).

    small_fc_lopt's: g, p, the momenta m, the second moments v, m/√(v + 10⁻⁶), 1/√(v + 10⁻⁶),
    g/√v̂ (v̂ the factored estimate, ``factored_features``), the row and column moments and
    1/√(· + 10⁻⁸) of each, and m/√v̂ (pairing the i-th momentum with the i-th factored decay;
    for a vector m/√(v_full + 10⁻⁶), as the reference). ``celo`` adds Celo's clip(g, ±0.1) and
    g/√(v + 10⁻⁶) (the unfactored RMS-normalized gradient). ``semantics`` "lopt_v1":
    ``factored_features_v1`` for every preconditioned feature."""
    m, v = acc["m"], acc["v"]
    gx = g[..., None].astype(m.dtype)
    p = p.astype(m.dtype)
    if semantics == "lopt_v1":
        precondition, row, col = factored_features_v1(acc, p.shape)
        fac_mom = m * precondition
    else:
        precondition, row, col = factored_features(acc, p.shape)
        fac_mom = m * (jax.lax.rsqrt(acc["full"] + 1e-6) if "full" in acc else precondition)
    rs_v = jax.lax.rsqrt(v + 1e-6)
    groups = [gx, p[..., None], m, v, m * rs_v, rs_v, gx * precondition,
              row, col, jax.lax.rsqrt(row + 1e-8), jax.lax.rsqrt(col + 1e-8), fac_mom]
    if celo:
        groups += [jnp.clip(gx, -0.1, 0.1), gx * rs_v]
    return groups


def second_moment_normalize(x, eps: float = 1e-5):
    """x / √(mean over the tensor of x² + ε), per feature column (the last axis)."""
    axes = tuple(range(x.ndim - 1))
    return x * jax.lax.rsqrt(jnp.mean(x**2, axis=axes, keepdims=True) + eps)


def group_sizes(n_mom: int, n_rms: int, n_fac: int, celo: bool = False) -> list:
    """The widths of ``feature_groups``' groups."""
    sizes = [1, 1, n_mom, n_rms, n_mom, n_rms, n_fac, n_fac, n_fac, n_fac, n_fac, n_mom]
    return sizes + ([1, 1] if celo else [])


INITS = ("random", "momentum")


def check_init(init: str, hidden: int) -> None:
    """One line unless ``init`` is "random" or "momentum" (which plants an identity path on two
    hidden units, so needs hidden >= 2)."""
    if init not in INITS:
        raise ValueError(f"init must be one of {', '.join(INITS)}; got {init!r}")
    if init == "momentum" and hidden < 2:
        raise ValueError(f"init 'momentum' needs hidden >= 2; got {hidden}")


def checked_decays(momentum_decays, rms_decays, factored_decays, **sizes) -> tuple:
    """The three decay tuples as floats, after one-line errors naming the field: a decay tuple
    empty or outside [0, 1), momenta and factored decays of different lengths (the m/√v̂
    features pair them), or a size in ``sizes`` below 1."""
    named = {"momentum_decays": momentum_decays, "rms_decays": rms_decays,
             "factored_decays": factored_decays}
    for field, decays in named.items():
        if not decays or any(not 0.0 <= float(d) < 1.0 for d in decays):
            raise ValueError(f"{field} must be a non-empty list of numbers in [0, 1), got "
                             f"{tuple(decays)}")
    if len(momentum_decays) != len(factored_decays):
        raise ValueError(f"momentum_decays and factored_decays must have the same length (the "
                         f"m/√v̂ features pair them); got {len(momentum_decays)} and "
                         f"{len(factored_decays)}")
    for field, value in sizes.items():
        if int(value) < 1:
            raise ValueError(f"{field} must be a positive integer, got {value}")
    return tuple(tuple(float(x) for x in d) for d in named.values())
