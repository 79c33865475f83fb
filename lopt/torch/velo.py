"""VeLO (Metz et al. 2022; lopt's ``velo``, equal to learned_optimization's HyperV2) in
PyTorch: the same per-tensor LSTM hypernetwork, on features of every tensor the step updates,
mixing the stacked split-input MLPs 100× and setting each tensor's step, as
``lopt.rules.velo``. Proven equal to the JAX rule on fixtures it wrote (tests/torch/).

Unlike Celo's scheduler, VeLO's reads each tensor (its momenta's spread, its rank) and
max-pools over all of them, so it runs once per optimizer step over every parameter that has a
gradient (``schedule_tensors``) before the per-tensor updates; each tensor keeps its own LSTM
state, the loss averages and the step count are the optimizer's.
"""
from __future__ import annotations

import torch

from lopt.torch.celo2 import init_accumulators
from lopt.torch.celo_reference import (
    FRACTION_CENTRES,
    CeloReference,
    _dense,
    haiku_lstm,
    loss_averages,
    loss_averages_step,
    mix,
)

RANKS = 5
BUGGED_LOSS_HORIZON = 10
MIX_SCALE = 100.0


def clip_log_abs(v, scale: float = 10.0):
    """clip(log(10⁻⁸ + |scale · v|), ±5) / 2."""
    return torch.clamp(torch.log(1e-8 + (v * scale).abs()), -5.0, 5.0) * 0.5


def tensor_features(p, m, v, embed, loss_features):
    """HyperV2's LSTM input for one tensor (``lopt.rules.velo.tensor_features``): m and v
    divided by RMS(θ), then the log-magnitudes of v's mean, of the momenta's variance and of
    v's spread about the momenta's mean, and the one-hot rank."""
    norm = torch.rsqrt(torch.clamp(p.square().mean(), min=1e-9))
    m, v = m * norm, v * norm
    if p.ndim == 0:  # the JAX mean over no axes is the value itself
        mean_m, var_m = m, torch.zeros_like(m)
        mean_v, var_v = v.reshape(-1), (v - m).square()
    else:
        axes = tuple(range(p.ndim))
        mean_m = m.mean(dim=axes, keepdim=True)
        var_m = (m - mean_m).square().mean(dim=axes)
        mean_v = v.mean(dim=axes, keepdim=True).reshape(-1)
        var_v = (v - mean_m).square().mean(dim=axes)  # centred on m's mean, as the reference
    rank = torch.zeros(RANKS, dtype=m.dtype)
    axes_longer_than_one = sum(1 for s in p.shape if s > 1)
    if axes_longer_than_one < RANKS:
        rank[axes_longer_than_one] = 1.0
    return torch.cat([embed, loss_features, clip_log_abs(mean_v), rank, clip_log_abs(var_m),
                      clip_log_abs(var_v)])


class Velo(CeloReference):
    """VeLO's step: ``schedule_tensors(shared, loss, num_steps, tensors)`` once per optimizer
    step over (p, g, state) of every tensor it updates, then ``update(p, g, acc, count,
    num_steps, context)`` per tensor with that tensor's context."""

    tensor_scheduler = True

    def __init__(self, theta: dict, config: dict, name: str, dtype=torch.float32):
        super().__init__(theta, config, name, dtype)
        self.bugged_next_lstm_state = bool(config.get("bugged_next_lstm_state", False))
        self.bugged_loss_features = bool(config.get("bugged_loss_features", False))

    def init(self, p) -> dict:
        init = self.theta["lstm_init"]
        return {**init_accumulators(p, 3, 1, 3), "h": init["h"][0].clone(),
                "c": init["c"][0].clone()}

    def init_shared(self, num_steps: int) -> dict:
        """The loss averages (over ``num_steps``, or 10 steps under ``bugged_loss_features``)
        and the step count."""
        return loss_averages(BUGGED_LOSS_HORIZON if self.bugged_loss_features else num_steps,
                             self.dtype)

    def schedule(self, shared, loss, num_steps):
        raise NotImplementedError("VeLO's scheduler reads every tensor: schedule_tensors")

    @torch.no_grad()
    def schedule_tensors(self, shared: dict, loss, num_steps: int, tensors: list) -> tuple:
        """([context per tensor], the next shared state) after ``loss``; ``tensors`` holds
        (p, g, acc) per tensor in the rule's layout, acc its state before this step."""
        features, shared = loss_averages_step(shared, loss)
        dtype = shared["decays"].dtype
        fraction = torch.tensor(shared["count"] / num_steps, dtype=dtype)
        embed = torch.tanh((fraction - torch.tensor(FRACTION_CENTRES, dtype=dtype)) * 10)
        x = torch.stack([tensor_features(p.to(acc["m"].dtype), acc["m"], acc["v"], embed,
                                         features) for p, _, acc in tensors])
        sched = self.theta["scheduler"]
        pooled = torch.relu(_dense(sched["mix"], x)).max(dim=0, keepdim=True).values
        h0 = torch.stack([acc["h"] for _, _, acc in tensors])
        c0 = torch.stack([acc["c"] for _, _, acc in tensors])
        h, c = haiku_lstm(sched["lstm"], _dense(sched["input"], x) + pooled, h0, c0)
        controls = _dense(sched["controls"], h)
        lr_mult = _dense(sched["step_size"], h)[:, 0]
        if self.bugged_next_lstm_state:
            h, c = h0, c0
        contexts = [{"mlp": mix(self.theta["ff"], controls[i], MIX_SCALE),
                     "lr_mult": lr_mult[i], "h": h[i], "c": c[i]} for i in range(len(tensors))]
        return contexts, {**shared, "count": shared["count"] + 1}

    @torch.no_grad()
    def update(self, p, g, acc: dict, count: int, num_steps=None, context=None) -> tuple:
        update, new = super().update(p, g, acc, count, num_steps, context)
        return update, {**new, "h": context["h"], "c": context["c"]}
