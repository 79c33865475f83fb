"""Celo as released (Moudgil et al. 2025; lopt's ``celo_reference``, the rule of the shipped
``celo_released``) in PyTorch: the same loss averages, fraction-trained embedding, scheduler
LSTM, softmax-mixed split-input MLPs and RMS(θ)-scaled step as ``lopt.rules.celo_reference``.

The JAX rule runs its scheduler once per tensor, but every tensor's row sees the same input
(the fraction trained and the loss features) from the same learned initial state, so every row
is the same: here it runs once per step, and its state (LSTM, loss averages, step count) is the
optimizer's, not a tensor's. Proven equal to the JAX rule on fixtures it wrote (tests/torch/).
"""
from __future__ import annotations

import math

import torch

from lopt.torch.adafac import second_moment_normalize
from lopt.torch.celo2 import (
    GRAD_CLIP,
    apply_split_mlp,
    factored_features,
    init_accumulators,
    update_accumulators,
)
from lopt.torch.rule_file import tree_to

MOMENTUM_DECAYS = (0.9, 0.99, 0.999)
RMS_DECAYS = (0.999,)
FACTORED_DECAYS = (0.9, 0.99, 0.999)
FRACTION_CENTRES = (0.03, 0.1, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0, 1.1)
LOSS_AVERAGES = 10


def _dense(layer: dict, x):
    return x @ layer["w"] + layer["b"]


def loss_averages(horizon: int, dtype=torch.float32) -> dict:
    """Celo's ``BufferLossAccumulators.init``: 10 empty loss averages, half-lives log-spaced
    from 10 steps to ``horizon``, and the step count (in ``dtype``: the scheduler computes in
    the dtype of its averages)."""
    halflife = torch.logspace(1.0, math.log10(horizon), LOSS_AVERAGES, dtype=dtype)
    return {"means": torch.zeros(LOSS_AVERAGES, dtype=dtype),
            "running_min": torch.full((LOSS_AVERAGES,), 999999999999.0, dtype=dtype),
            "iteration": 0, "count": 0, "decays": torch.exp(-1.0 / halflife)}


def loss_averages_step(shared: dict, loss) -> tuple:
    """(the 9 loss features after ``loss``, ``shared`` with its averages updated): the clipped,
    bias-corrected averages and running minima of ``lopt.rules.celo_reference``."""
    decays, it = shared["decays"], shared["iteration"]
    loss = torch.as_tensor(float(loss), dtype=decays.dtype)
    correction = 1 - decays ** (it + 1)
    approx_max = loss if it == 0 else torch.max(shared["means"] / correction)
    loss = torch.minimum(approx_max.abs() * 2, loss)
    means = shared["means"] * decays + loss * (1.0 - decays)
    running_min = torch.minimum(shared["running_min"], means / correction)
    it += 1
    if it <= 2:
        features = torch.zeros(LOSS_AVERAGES - 1, dtype=decays.dtype)
    else:
        cor_mean = means / (1 - decays ** it)
        low = running_min[:-1]
        features = ((cor_mean[:-1] - low) / torch.clamp(cor_mean[1:] - low, min=1e-8)
                    - 1.0).clamp(-1.0, 1.0)
    return features, {**shared, "means": means, "running_min": running_min, "iteration": it}


def haiku_lstm(weights: dict, x, h, c) -> tuple:
    """haiku's LSTM: gates (input, cell, forget, output) of [x; h] W + b, forget bias 1."""
    i, g, f, o = torch.chunk(_dense(weights, torch.cat([x, h], dim=-1)), 4, dim=-1)
    c = torch.sigmoid(f + 1) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def feature_groups(p, g, acc: dict) -> list:
    """Celo's 14 groups (``lopt.rules.celo_reference.feature_groups``)."""
    m, v = acc["m"], acc["v"]
    gx = g.unsqueeze(-1)
    precondition, row, col = factored_features(acc, tuple(p.shape))
    rs = torch.rsqrt(v + 1e-6)
    fac_mom = m * (acc["full"] ** -0.5 if "full" in acc else precondition)
    return [gx, gx.clamp(-0.1, 0.1), p.unsqueeze(-1), m, v, m * rs, rs, gx * precondition,
            gx * rs, row, col, torch.rsqrt(row + 1e-8), torch.rsqrt(col + 1e-8), fac_mom]


class CeloReference:
    """Celo's step: ``schedule(state, loss, num_steps)`` once per optimizer step (the shared
    scheduler: mixing weights and step multiplier), then ``update(p, g, acc, count, num_steps,
    context)`` per tensor."""

    wants_num_steps = True
    wants_loss = True

    def __init__(self, theta: dict, config: dict, name: str, dtype=torch.float32):
        """``dtype``: what the rule computes in (float64 with float64 parameters: the JAX rule
        in x64 mode, as tests/torch checks VeLO beyond float32's rounding)."""
        del name
        self.dtype = dtype
        self.theta = tree_to(theta, dtype)
        self.exp_scale = float(config.get("exp_scale", 1e-3))
        self.step_scale = float(config.get("step_scale", 1e-3))
        self.decays = [torch.tensor(d, dtype=dtype)
                       for d in (MOMENTUM_DECAYS, RMS_DECAYS, FACTORED_DECAYS)]

    def init(self, p) -> dict:
        return init_accumulators(p, 3, 1, 3)

    def init_shared(self, num_steps: int) -> dict:
        """The scheduler's state: the learned initial LSTM state, empty loss averages whose
        half-lives run from 10 steps to ``num_steps``, the step count."""
        return {"h": self.theta["lstm_init"]["h"].clone(),
                "c": self.theta["lstm_init"]["c"].clone(),
                **loss_averages(num_steps, self.dtype)}

    @torch.no_grad()
    def schedule(self, shared: dict, loss, num_steps: int) -> tuple:
        """(context for this step's ``update``s, the next shared state) after ``loss``."""
        features, shared = loss_averages_step(shared, loss)
        fraction = torch.tensor(shared["count"] / num_steps, dtype=self.dtype)
        embed = torch.tanh((fraction - torch.tensor(FRACTION_CENTRES, dtype=self.dtype)) * 10)
        x = torch.cat([embed, features])[None]
        sched = self.theta["scheduler"]
        pooled = torch.relu(_dense(sched["mix"], x))
        h, c = haiku_lstm(sched["lstm"], _dense(sched["input"], x) + pooled, shared["h"],
                          shared["c"])
        controls = torch.softmax(_dense(sched["controls"], h), dim=-1)[0]
        lr_mult = torch.exp(_dense(sched["step_size"], h)[0, 0]) * 0.1
        mixed = mix(self.theta["ff"], controls)
        return {"mlp": mixed, "lr_mult": lr_mult}, {**shared, "h": h, "c": c,
                                                    "count": shared["count"] + 1}

    @torch.no_grad()
    def update(self, p, g, acc: dict, count: int, num_steps=None, context=None) -> tuple:
        g = g.to(torch.promote_types(g.dtype, self.dtype)).clamp(-GRAD_CLIP, GRAD_CLIP)
        acc = update_accumulators(acc, g, *self.decays)
        p32 = p.to(g.dtype)
        groups = [second_moment_normalize(x) for x in feature_groups(p32, g, acc)]
        out = apply_split_mlp(context["mlp"], groups)
        scale = torch.sqrt(p32.square().mean() + 1e-9)
        step = out[..., 0] * scale * torch.exp(out[..., 1] * self.exp_scale) * self.step_scale
        return (-context["lr_mult"] * step).to(p.dtype), acc


def mix(tree, controls, scale: float = 1.0):
    """Every stacked weight [param_inits, ...] as ``scale`` × the mean over its first axis
    weighted by ``controls`` (what the JAX rules' ``mix`` computes)."""
    if isinstance(tree, dict):
        return {k: mix(v, controls, scale) for k, v in tree.items()}
    if isinstance(tree, list):
        return [mix(v, controls, scale) for v in tree]
    mean = (tree * controls.reshape((-1,) + (1,) * (tree.ndim - 1))).mean(dim=0)
    return mean if scale == 1.0 else scale * mean
