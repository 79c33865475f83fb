"""small_fc_lopt / AdafacMLPLOpt (Metz et al. 2022; lopt's ``adafac_mlp``) in PyTorch: the same
Adafactor features, learned decays, per-parameter MLP and step as
``lopt.rules.adafac_mlp``, on whole torch tensors. Proven equal to the JAX rule on fixtures the
JAX rule wrote (tests/torch/)."""
from __future__ import annotations

import torch

from lopt.torch.celo2 import factored_dims, init_accumulators, update_accumulators

STEP_TIMESCALES = (1, 3, 10, 30, 100, 300, 1000, 3000, 10000, 30000, 100000)
DECAY_SCALE = 10.0


def decays_from_offsets(initial, offset, clip: bool):
    """β = 1 − (1 − β₀)·exp(10·δ), clipped to [0, 1] when ``clip``."""
    base = torch.log1p(-torch.tensor(initial, dtype=torch.float32)) / DECAY_SCALE
    decays = 1.0 - torch.exp((base + offset) * DECAY_SCALE)
    return decays.clamp(0.0, 1.0) if clip else decays


def _rsqrt_floor(x):
    return torch.rsqrt(torch.clamp(x, min=1e-9))


def factored_features(acc: dict, shape, semantics: str) -> tuple:
    """(preconditioner, row, column) per coordinate (``adafactor_features``), each broadcastable
    to ``shape + (k,)``: the row and column moments keep size 1 on the axis they are constant
    along (the preconditioner, their product, is full size)."""
    if "full" in acc:
        if semantics == "lopt_v1":
            return torch.rsqrt(acc["full"] + 1e-30), acc["full"], acc["full"]
        return _rsqrt_floor(acc["full"] + 1e-9), acc["full"], acc["full"]
    row_axis, col_axis = factored_dims(shape)
    row = acc["row"].unsqueeze(col_axis)
    col = acc["col"].unsqueeze(row_axis)
    if semantics == "lopt_v1":
        v_hat = row * col / (row.mean(dim=row_axis, keepdim=True) + 1e-30)
        precondition = torch.rsqrt(v_hat + 1e-30)
    else:
        precondition = _rsqrt_floor(row / (row.mean(dim=row_axis, keepdim=True) + 1e-9)) \
            * _rsqrt_floor(col)
    return precondition, row, col


def feature_groups(p, g, acc: dict, semantics: str) -> list:
    """small_fc_lopt's feature groups of one tensor (``adafactor_features.feature_groups``),
    the row and column ones unexpanded (``factored_features``)."""
    m, v = acc["m"], acc["v"]
    gx = g.unsqueeze(-1).to(m.dtype)
    p = p.to(m.dtype)
    precondition, row, col = factored_features(acc, tuple(p.shape), semantics)
    if semantics == "lopt_v1":
        fac_mom = m * precondition
    else:
        fac_mom = m * (torch.rsqrt(acc["full"] + 1e-6) if "full" in acc else precondition)
    rs_v = torch.rsqrt(v + 1e-6)
    return [gx, p.unsqueeze(-1), m, v, m * rs_v, rs_v, gx * precondition, row, col,
            torch.rsqrt(row + 1e-8), torch.rsqrt(col + 1e-8), fac_mom]


def second_moment_normalize(x, eps: float = 1e-5):
    """x / √(mean over the tensor of x² + ε), per feature column."""
    if x.ndim == 1:  # a scalar parameter's features: the mean over no axes is x² itself
        return x * torch.rsqrt(x.square() + eps)
    axes = tuple(range(x.ndim - 1))
    return x * torch.rsqrt(x.square().mean(dim=axes, keepdim=True) + eps)


def normalized_first_layer(groups: list, w, b, eps: float = 1e-5):
    """b + [second_moment_normalize(group) for each group] @ w, without writing the normalized
    features: each group's per-column scale folded into its rows of w, the full-size groups
    concatenated for one matmul, a group of size 1 along some axis (a row or column moment)
    multiplied at its own size and broadcast. Equal to the plain form up to float
    reassociation (the mean of a broadcast group's squares is the mean over its entries)."""
    full = torch.broadcast_shapes(*(x.shape[:-1] for x in groups))
    if len(full) == 0:  # a scalar parameter: normalized per element
        return b + torch.cat([second_moment_normalize(x, eps) for x in groups]) @ w
    rows, start = [], 0
    for x in groups:
        scale = torch.rsqrt(x.square().mean(dim=tuple(range(x.ndim - 1))) + eps)
        rows.append(scale[:, None] * w[start:start + x.shape[-1]])
        start += x.shape[-1]
    wide = [i for i, x in enumerate(groups) if tuple(x.shape[:-1]) == tuple(full)]
    x = torch.cat([groups[i] for i in wide], dim=-1)
    out = torch.addmm(b, x.reshape(-1, x.shape[-1]), torch.cat([rows[i] for i in wide]))
    out = out.reshape(*full, w.shape[1])
    # the narrow groups summed at their own size first, one broadcast add per shape
    narrow: dict = {}
    for i, x in enumerate(groups):
        if i not in wide:
            key = tuple(x.shape[:-1])
            narrow[key] = x @ rows[i] if key not in narrow else narrow[key] + x @ rows[i]
    for part in narrow.values():
        out = out + part
    return out


def hidden_layers(layers: list, first):
    """The MLP after its first layer: ReLU, then each layer, ReLU between (not after the last)."""
    h = torch.relu(first)
    for i, layer in enumerate(layers):
        h = h @ layer["w"] + layer["b"]
        if i < len(layers) - 1:
            h = torch.relu(h)
    return h


def step_embedding(count: int):
    t = torch.tensor(float(count), dtype=torch.float32)
    return torch.tanh(t / torch.tensor(STEP_TIMESCALES, dtype=torch.float32) - 1.0)


class AdafacMLP:
    """One tensor's small_fc_lopt step: ``update(p, g, acc, count)`` -> (update, accumulators)."""

    wants_num_steps = False

    def __init__(self, theta: dict, config: dict, name: str):
        del name
        self.mlp = theta["mlp"]
        self.step_scale = float(config.get("step_scale", 1e-3))
        self.exp_scale = float(config.get("exp_scale", 1e-3))
        self.semantics = config.get("feature_semantics", "reference")
        clip = self.semantics == "reference"
        clip_momentum = clip and config.get("clip_momentum_decays", True)
        d = theta["decays"]
        self.decays = (decays_from_offsets(config["momentum_decays"], d["momentum"],
                                           clip_momentum),
                       decays_from_offsets(config["rms_decays"], d["rms"], clip),
                       decays_from_offsets(config["factored_decays"], d["factored"], clip))
        self.n_feat = self.mlp[0]["w"].shape[0] - len(STEP_TIMESCALES)

    def init(self, p) -> dict:
        return init_accumulators(p, *(len(d) for d in self.decays))

    @torch.no_grad()
    def update(self, p, g, acc: dict, count: int, num_steps=None) -> tuple:
        acc = update_accumulators(acc, g, *self.decays)
        w0 = self.mlp[0]["w"]
        bias = self.mlp[0]["b"] + step_embedding(count) @ w0[self.n_feat:]
        h = hidden_layers(self.mlp[1:], normalized_first_layer(
            feature_groups(p, g, acc, self.semantics), w0[:self.n_feat], bias))
        step = h[..., 0] * torch.exp(h[..., 1] * self.exp_scale) * self.step_scale
        return (-step).to(p.dtype), acc


