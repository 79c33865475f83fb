"""Modern hand-designed baselines, each optax's own transformation behind the UpdateRule
interface (empty theta): AdamW, NAdamW, Lion and Muon, with optax's defaults except the
learning rate (tuned per task by ``lopt.evaluation.tune_learning_rate``)."""
from __future__ import annotations

import optax
import optax.contrib

from lopt.rules.base import UpdateRule
from lopt.rules.hand_designed import from_optax


def adamw(learning_rate: float = 0.001, weight_decay: float = 1e-4) -> UpdateRule:
    """AdamW (Loshchilov & Hutter 2019): Adam with decoupled weight decay."""
    return from_optax(optax.adamw(learning_rate, weight_decay=weight_decay), "adamw",
                      {"learning_rate": learning_rate, "weight_decay": weight_decay})


def nadamw(learning_rate: float = 0.001, weight_decay: float = 1e-4) -> UpdateRule:
    """NAdamW (Dozat 2016 with decoupled weight decay): Adam with a Nesterov momentum step."""
    return from_optax(optax.nadamw(learning_rate, weight_decay=weight_decay), "nadamw",
                      {"learning_rate": learning_rate, "weight_decay": weight_decay})


def lion(learning_rate: float = 1e-4, weight_decay: float = 1e-3) -> UpdateRule:
    """Lion (Chen et al. 2023): the sign of an interpolated momentum, decoupled weight decay."""
    return from_optax(optax.lion(learning_rate, weight_decay=weight_decay), "lion",
                      {"learning_rate": learning_rate, "weight_decay": weight_decay})


def muon(learning_rate: float = 0.02) -> UpdateRule:
    """Muon (Jordan et al. 2024): momentum orthogonalized by Newton–Schulz iterations for
    matrices; optax's Adam for the other leaves."""
    return from_optax(optax.contrib.muon(learning_rate), "muon", {"learning_rate": learning_rate})


MODERN_BASELINES = {
    "adamw": (adamw, "AdamW, decoupled weight decay 1e-4 (optax)"),
    "nadamw": (nadamw, "NAdamW, Nesterov Adam with decoupled weight decay 1e-4 (optax)"),
    "lion": (lion, "Lion, signed momentum, weight decay 1e-3 (optax)"),
    "muon": (muon, "Muon, Newton-Schulz orthogonalized momentum for matrices (optax.contrib)"),
}
