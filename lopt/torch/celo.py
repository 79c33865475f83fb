"""lopt's own Celo-style rule (``lopt.rules.celo``, the rule of the shipped ``celo_tiny``) in
PyTorch: the Adafactor-feature MLP with learned decays, its RMS-normalized update and the
learned per-tensor LSTM scheduler on the fraction trained, the loss features and each tensor's
parameter and gradient RMS, max-pooled over tensors. Like VeLO's, the scheduler reads every
tensor, so it runs once per optimizer step over all parameters with a gradient
(``schedule_tensors``); each tensor keeps its LSTM state. Proven equal to the JAX rule on
fixtures it wrote (tests/torch/)."""
from __future__ import annotations

import math

import torch

from lopt.torch.adafac import (
    decays_from_offsets,
    feature_groups,
    hidden_layers,
    normalized_first_layer,
)
from lopt.torch.celo2 import GRAD_CLIP, init_accumulators, update_accumulators
from lopt.torch.celo_reference import FRACTION_CENTRES, LOSS_AVERAGES, _dense


def loss_decays(num_steps: int):
    """Half-lives log-spaced from 10 steps to the run length (at least 10)."""
    top = torch.log10(torch.tensor(float(max(num_steps, 10)), dtype=torch.float32))
    halflife = 10.0 ** (1.0 + torch.linspace(0.0, 1.0, LOSS_AVERAGES) * (top - 1.0))
    return torch.exp(-1.0 / halflife)


def lstm_cell(weights: dict, x, h, c) -> tuple:
    """lopt's LSTM cell (``lopt.rules.nets.lstm_cell``): gates (input, forget, cell, output)."""
    i, f, g, o = torch.chunk(_dense(weights, torch.cat([x, h], dim=-1)), 4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def log_magnitude(x):
    return torch.clamp(torch.log(x + 1e-10), -10.0, 10.0) / 10.0


class Celo:
    """One step of ``lopt.rules.celo``: ``schedule_tensors`` once per optimizer step, then
    ``update(p, g, acc, count, num_steps, context)`` per tensor."""

    wants_num_steps = True
    wants_loss = True
    tensor_scheduler = True

    def __init__(self, theta: dict, config: dict, name: str):
        del name
        self.mlp = theta["mlp"]
        self.scheduler = theta["scheduler"]
        self.exp_scale = float(config.get("exp_scale", 1e-3))
        self.step_scale = float(config.get("step_scale", 1e-3))
        self.semantics = config.get("feature_semantics", "reference")
        clip = self.semantics == "reference"
        d = theta["decays"]
        self.decays = (decays_from_offsets(config["momentum_decays"], d["momentum"], clip),
                       decays_from_offsets(config["rms_decays"], d["rms"], clip),
                       decays_from_offsets(config["factored_decays"], d["factored"], clip))
        self.hidden = int(config.get("scheduler_hidden", 16))

    def init(self, p) -> dict:
        return {**init_accumulators(p, *(len(d) for d in self.decays)),
                "h": torch.zeros(self.hidden), "c": torch.zeros(self.hidden)}

    def init_shared(self, num_steps: int) -> dict:
        """The loss averages (sums, running minima, their count) and the step count."""
        return {"sum": torch.zeros(LOSS_AVERAGES),
                "min": torch.full((LOSS_AVERAGES,), math.inf), "iteration": 0, "count": 0,
                "decays": loss_decays(num_steps)}

    @staticmethod
    def _loss_step(shared: dict, loss) -> tuple:
        """(the loss features after ``loss``, the updated averages), as
        ``lopt.rules.celo.update_loss_buffer`` then ``loss_features``."""
        decays, n = shared["decays"], shared["iteration"]
        loss = torch.as_tensor(float(loss), dtype=torch.float32)
        corrected = shared["sum"] / (1 - decays ** max(n, 1))
        cap = 2 * corrected.abs().max() if n > 0 else loss.abs()
        loss = torch.minimum(loss, cap)
        total = decays * shared["sum"] + (1 - decays) * loss
        n += 1
        corrected = total / (1 - decays ** n)
        low_all = torch.minimum(shared["min"], corrected)
        if n <= 2:
            features = torch.zeros(LOSS_AVERAGES - 1)
        else:
            fast, slow, low = corrected[:-1], corrected[1:], low_all[:-1]
            low = torch.where(torch.isfinite(low), low, fast)
            features = ((fast - low) / torch.clamp(slow - low, min=1e-8) - 1.0).clamp(-1, 1)
        return features, {**shared, "sum": total, "min": low_all, "iteration": n}

    @torch.no_grad()
    def schedule_tensors(self, shared: dict, loss, num_steps: int, tensors: list) -> tuple:
        """([context per tensor], the next shared state) after ``loss``; ``tensors`` holds
        (p, g, acc) per tensor in the rule's layout, acc its state before this step."""
        features, shared = self._loss_step(shared, loss)
        fraction = torch.tensor(float(shared["count"]), dtype=torch.float32) / \
            torch.tensor(float(max(num_steps, 1)), dtype=torch.float32)
        embed = torch.tanh(10.0 * (fraction - torch.tensor(FRACTION_CENTRES)))
        rms = lambda x: torch.sqrt(x.to(torch.float32).square().mean())
        per_tensor = torch.stack([log_magnitude(torch.stack([rms(p), rms(self.clip_gradient(g))]))
                                  for p, g, _ in tensors])
        common = torch.cat([embed, features])
        x = torch.cat([common.expand(len(tensors), common.shape[0]), per_tensor], dim=1)
        sched = self.scheduler
        mixed = torch.relu(_dense(sched["mix"], x)).max(dim=0, keepdim=True).values
        h0 = torch.stack([acc["h"] for _, _, acc in tensors])
        c0 = torch.stack([acc["c"] for _, _, acc in tensors])
        h, c = lstm_cell(sched["lstm"], _dense(sched["input"], x) + mixed, h0, c0)
        log_lr = _dense(sched["out"], h)[:, 0]
        contexts = [{"log_lr": log_lr[i], "h": h[i], "c": c[i]} for i in range(len(tensors))]
        return contexts, {**shared, "count": shared["count"] + 1}

    def clip_gradient(self, g):
        return g.to(torch.promote_types(g.dtype, torch.float32)).clamp(-GRAD_CLIP, GRAD_CLIP)

    @torch.no_grad()
    def update(self, p, g, acc: dict, count: int, num_steps=None, context=None) -> tuple:
        g = self.clip_gradient(g)
        new = update_accumulators(acc, g, *self.decays)
        groups = feature_groups(p, g, new, self.semantics)
        gx = g.unsqueeze(-1).to(new["m"].dtype)
        groups += [gx.clamp(-0.1, 0.1), gx * torch.rsqrt(new["v"] + 1e-6)]
        h = hidden_layers(self.mlp[1:], normalized_first_layer(groups, self.mlp[0]["w"],
                                                                self.mlp[0]["b"]))
        u = h[..., 0] * torch.exp(h[..., 1] * self.exp_scale)
        u = u * torch.rsqrt(u.square().mean() + 1e-12)
        update = -self.step_scale * torch.exp(context["log_lr"]) * u
        return update.to(p.dtype), {**new, "h": context["h"], "c": context["c"]}
