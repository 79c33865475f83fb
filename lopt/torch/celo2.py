"""Celo2 and Celo2-base (Moudgil et al. 2026) in PyTorch: the same arithmetic as
``lopt.rules.celo2`` — features, the split-input MLP, Muon's Newton–Schulz orthogonalization,
RMS normalization, the grafted Adam magnitude and the warm-up + cosine schedule — on torch
tensors, one whole tensor at a time (no loop over elements). Proven equal to the JAX rule on
fixtures the JAX rule wrote (tests/torch/)."""
from __future__ import annotations

import math

import numpy as np
import torch

GRAD_CLIP = 1000.0
NS_COEFFS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5
ADAM_EPS = 1e-8
WARMUP_FRACTION = 20


def factored_dims(shape):
    """The two largest axes (row, column) of a tensor of at least two axes (stable order, as
    lopt.rules.adafactor_features), None below."""
    if len(shape) < 2:
        return None
    order = np.argsort(np.asarray(shape), kind="stable")
    return int(order[-2]), int(order[-1])


def init_accumulators(p: torch.Tensor, n_mom: int, n_rms: int, n_fac: int) -> dict:
    """Zero momenta, RMS and Adafactor moments of one tensor, in float32 at least."""
    dtype = torch.promote_types(p.dtype, torch.float32)
    shape = tuple(p.shape)
    acc = {"m": torch.zeros(shape + (n_mom,), dtype=dtype, device=p.device),
           "v": torch.zeros(shape + (n_rms,), dtype=dtype, device=p.device)}
    dims = factored_dims(shape)
    if dims is None:
        acc["full"] = torch.zeros(shape + (n_fac,), dtype=dtype, device=p.device)
    else:
        row_axis, col_axis = dims
        rows = tuple(s for i, s in enumerate(shape) if i != col_axis)
        cols = tuple(s for i, s in enumerate(shape) if i != row_axis)
        acc["row"] = torch.zeros(rows + (n_fac,), dtype=dtype, device=p.device)
        acc["col"] = torch.zeros(cols + (n_fac,), dtype=dtype, device=p.device)
    return acc


def update_accumulators(acc: dict, g, moms, rmss, facs) -> dict:
    """m ← βm + (1 − β)g, v ← βv + (1 − β)g², factored moments of g² + 10⁻³⁰ (Adafactor)."""
    gx = g.unsqueeze(-1).to(acc["m"].dtype)
    new = {"m": moms * acc["m"] + (1 - moms) * gx, "v": rmss * acc["v"] + (1 - rmss) * gx**2}
    g2 = gx**2 + 1e-30
    if "full" in acc:
        new["full"] = facs * acc["full"] + (1 - facs) * g2
    else:
        row_axis, col_axis = factored_dims(tuple(g.shape))
        new["row"] = facs * acc["row"] + (1 - facs) * g2.mean(dim=col_axis)
        new["col"] = facs * acc["col"] + (1 - facs) * g2.mean(dim=row_axis)
    return new


def _safe_rsqrt(x):
    return torch.rsqrt(torch.clamp(x, min=1e-9))


def factored_features(acc: dict, shape) -> tuple:
    """(preconditioner, row, column) at every coordinate, as the reference computes them."""
    if "full" in acc:
        return _safe_rsqrt(acc["full"] + 1e-9), acc["full"], acc["full"]
    row_axis, col_axis = factored_dims(shape)
    row = acc["row"].unsqueeze(col_axis)
    col = acc["col"].unsqueeze(row_axis)
    row_mean = row.mean(dim=row_axis, keepdim=True)
    precondition = _safe_rsqrt(row / (row_mean + 1e-9)) * _safe_rsqrt(col)
    full = tuple(shape) + (row.shape[-1],)
    return precondition.expand(full), row.expand(full), col.expand(full)


def feature_groups(p, g, acc, broadcast: bool = True) -> list:
    """Celo2's feature groups of one tensor (lopt.rules.celo2.feature_groups); without
    ``broadcast`` the row and column groups keep size 1 on the axis they are constant along."""
    m, v = acc["m"], acc["v"]
    gx = g.unsqueeze(-1).to(m.dtype)
    precondition, row, col = factored_features(acc, tuple(p.shape))
    rs = torch.rsqrt(v + 1e-8)
    groups = [gx, gx.clamp(-0.1, 0.1), p.to(m.dtype).unsqueeze(-1), m, v, m * rs, rs,
              gx * precondition, gx * rs]
    if p.ndim >= 2:
        if not broadcast:
            row_axis, col_axis = factored_dims(tuple(p.shape))
            row, col = acc["row"].unsqueeze(col_axis), acc["col"].unsqueeze(row_axis)
        groups += [row, col, torch.rsqrt(row + 1e-8), torch.rsqrt(col + 1e-8), m * precondition]
    return groups


def normalize_last_two_axes(x, ndim: int, eps: float = 1e-9):
    """x / √(mean of x² over the tensor's last two axes (its only one for a vector) + ε)."""
    axes = tuple(range(ndim))[-2:]
    return x * torch.rsqrt(x.square().mean(dim=axes, keepdim=True) + eps)


def orthogonalize(step, ns_steps: int = NS_STEPS):
    """Muon's quintic Newton–Schulz iteration on the last two axes (Jordan et al. 2024)."""
    a, b, c = NS_COEFFS
    wide = step.shape[-2] <= step.shape[-1]
    x = step if wide else step.transpose(-2, -1)
    x = x / (torch.linalg.matrix_norm(x, keepdim=True) + 1e-8)
    for _ in range(ns_steps):
        gram = x @ x.transpose(-2, -1)
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x if wide else x.transpose(-2, -1)


def apply_split_mlp(theta: dict, groups: list):
    """The split-input MLP: one matmul of the concatenated groups with the stacked first-layer
    weights, ReLU layers, 3 outputs."""
    x = torch.cat(groups, dim=-1)
    w = torch.cat(theta["first"]["w"][:len(groups)], dim=0)
    return _hidden_layers(theta, x @ w + theta["first"]["b"])


def _hidden_layers(theta: dict, out):
    for layer in theta["layers"]:
        out = torch.relu(out) @ layer["w"] + layer["b"]
    return out


def apply_normalized_split_mlp(theta: dict, groups: list, ndim: int, eps: float = 1e-9):
    """``apply_split_mlp`` of the groups each normalized by ``normalize_last_two_axes``,
    without writing the normalized features: the full-size groups' normalization folded into
    the first layer's weights, the row and column groups normalized and multiplied at their
    own size and broadcast (lopt.rules.celo2.apply_normalized_split_mlp; equal up to float
    reassociation)."""
    axes = tuple(range(ndim))[-2:]
    full = torch.broadcast_shapes(*(x.shape[:-1] for x in groups))
    w_groups = theta["first"]["w"][:len(groups)]
    wide = [i for i, x in enumerate(groups) if tuple(x.shape[:-1]) == tuple(full)]
    x = torch.cat([groups[i] for i in wide], dim=-1)
    w = torch.cat([w_groups[i] for i in wide], dim=0)
    scale = torch.rsqrt(x.square().mean(dim=axes) + eps)  # [*lead, features]
    if ndim <= 2:
        first = x @ (scale[:, None] * w)
    else:  # one scale per leading index: a batched product
        lead, inner = x.shape[:ndim - 2], x.shape[ndim - 2:ndim]
        rows = x.reshape(*lead, inner[0] * inner[1], x.shape[-1])
        first = (rows @ (scale[..., :, None] * w)).reshape(*x.shape[:-1], w.shape[1])
    for i, group in enumerate(groups):
        if i not in wide:
            first = first + normalize_last_two_axes(group, ndim, eps) @ w_groups[i]
    return _hidden_layers(theta, first + theta["first"]["b"])


def adam_rms(m, v, b1, b2, count: int, ndim: int):
    """RMS over the last two axes of Adam's bias-corrected step at step count + 1."""
    t = torch.tensor(float(count + 1), dtype=torch.float32)
    step = (m / (1 - b1**t)) / (torch.sqrt(v / (1 - b2**t)) + ADAM_EPS)
    axes = tuple(range(ndim))[-2:]
    return torch.sqrt(step.square().mean(dim=axes, keepdim=True))


def warmup_cosine(count: int, num_steps: int) -> torch.Tensor:
    """Linear warm-up over max(1, num_steps // 20) steps, then cosine to 0 at num_steps."""
    t = torch.tensor(float(count), dtype=torch.float32)
    total = torch.tensor(float(num_steps), dtype=torch.float32)
    warm = torch.clamp(torch.floor(total / WARMUP_FRACTION), min=1.0)
    span = torch.clamp(total - warm, min=1.0)
    decay = 0.5 * (1.0 + torch.cos(math.pi * torch.clamp(t - warm, 0.0, None).minimum(span)
                                   / span))
    return torch.where(t < warm, t / warm, decay)


class Celo2:
    """One tensor's Celo2 step from its state: ``update(p, g, acc, count)`` returns (the update
    to add, the new accumulators), as ``lopt.rules.celo2``'s ``update`` for that leaf, with the
    schedule factor applied."""

    def __init__(self, theta: dict, config: dict, name: str):
        self.theta = theta
        self.step_scale = float(config.get("step_scale", 1e-3))
        self.exp_scale = float(config.get("exp_scale", 0.0))
        self.decays = [torch.tensor(config[k], dtype=torch.float32) for k in
                       ("momentum_decays", "rms_decays", "factored_decays")]
        self.orthogonal = name == "celo2" and config.get("orthogonalize_matrices", True)
        self.orthogonal_max_dim = config.get("orthogonalize_max_dim")
        self.weight_decay = float(config.get("weight_decay", 0.0))
        self.magnitude = config.get("magnitude", "rms")
        self.schedule = config.get("schedule", "constant")

    @property
    def wants_num_steps(self) -> bool:
        return self.schedule == "cosine"

    def init(self, p) -> dict:
        return init_accumulators(p, *(len(d) for d in self.decays))

    @torch.no_grad()
    def update(self, p, g, acc: dict, count: int, num_steps=None) -> tuple:
        moms, rmss, facs = self.decays
        g = g.to(torch.promote_types(g.dtype, torch.float32)).clamp(-GRAD_CLIP, GRAD_CLIP)
        acc = update_accumulators(acc, g, moms, rmss, facs)
        if p.ndim == 0:  # as the reference: a scalar is a vector of one
            p1, g1, acc1 = p[None], g[None], {k: x[None] for k, x in acc.items()}
        else:
            p1, g1, acc1 = p, g, acc
        out = apply_normalized_split_mlp(
            self.theta, feature_groups(p1, g1, acc1, broadcast=False), p1.ndim)
        step = out[..., 0] * torch.exp(out[..., 1] * self.exp_scale)
        if self.orthogonal and p1.ndim >= 2 and (
                self.orthogonal_max_dim is None or min(p1.shape[-2:]) <= self.orthogonal_max_dim):
            step = orthogonalize(step)
        step = normalize_last_two_axes(step, p1.ndim)
        if self.magnitude == "adam":
            step = step * adam_rms(acc1["m"][..., 0], acc1["v"][..., 0], moms[0], rmss[0],
                                   count, p1.ndim)
        step = step.reshape(p.shape)
        if self.weight_decay:
            step = step + self.weight_decay * p.to(step.dtype)
        update = (-self.step_scale * step).to(p.dtype)
        if self.schedule == "cosine":
            update = (update * warmup_cosine(count, num_steps)).to(p.dtype)
        return update, acc
