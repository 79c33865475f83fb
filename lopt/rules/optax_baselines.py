"""Modern hand-designed baselines, each optax's own transformation behind the UpdateRule interface
(empty theta): AdamW, NAdamW, Lion, schedule-free AdamW and Muon, with optax's defaults except the
learning rate (tuned per task by ``lopt.evaluation.tune_learning_rate``), and Adam with all of its
hyperparameters free, for random search (Metz et al. 2019's stronger baseline).
"""
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


def schedule_free_adamw(learning_rate: float = 0.0025, weight_decay: float = 0.0) -> UpdateRule:
    """Schedule-free AdamW (Defazio et al. 2024): gradients at y, an interpolation of the
    plain iterate z and its running average x; measured at x (optax's eval params)."""
    return from_optax(optax.contrib.schedule_free_adamw(learning_rate, weight_decay=weight_decay),
                      "schedule_free_adamw",
                      {"learning_rate": learning_rate, "weight_decay": weight_decay},
                      eval_params=lambda state, params: optax.contrib.schedule_free_eval_params(
                          state, params))


def adam_all(learning_rate: float = 0.001, b1: float = 0.9, b2: float = 0.999,
             eps: float = 1e-8, weight_decay: float = 0.0) -> UpdateRule:
    """Adam with decoupled weight decay and every hyperparameter an argument (optax's adamw): the
    rule ``lopt.evaluation.random_search`` tunes as Metz et al. 2019's Adam random-search
    baseline."""
    return from_optax(optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps,
                                  weight_decay=weight_decay), "adam_all",
                      {"learning_rate": learning_rate, "b1": b1, "b2": b2, "eps": eps,
                       "weight_decay": weight_decay})


# Log-uniform ranges of the random search over Adam, after Metz et al. 2020 ("Using a thousand
# optimization tasks", Adam8p): 1 − β1 and 1 − β2 are drawn, not β1 and β2.
ADAM_SEARCH_SPACE = {"learning_rate": (1e-5, 1.0), "one_minus_b1": (1e-3, 1.0),
                     "one_minus_b2": (1e-5, 1.0), "eps": (1e-10, 1e-2),
                     "weight_decay": (1e-8, 1e-1)}


def adam_search_rule(hparams: dict) -> UpdateRule:
    """``adam_all`` at one point of ``ADAM_SEARCH_SPACE``."""
    return adam_all(hparams["learning_rate"], 1.0 - hparams["one_minus_b1"],
                    1.0 - hparams["one_minus_b2"], hparams["eps"], hparams["weight_decay"])


def muon(learning_rate: float = 0.02) -> UpdateRule:
    """Muon (Jordan et al. 2024): momentum orthogonalized by Newton–Schulz iterations for
    matrices; optax's Adam for the other leaves."""
    return from_optax(optax.contrib.muon(learning_rate), "muon", {"learning_rate": learning_rate})


MODERN_BASELINES = {
    "adamw": (adamw, "AdamW, decoupled weight decay 1e-4 (optax)"),
    "nadamw": (nadamw, "NAdamW, Nesterov Adam with decoupled weight decay 1e-4 (optax)"),
    "lion": (lion, "Lion, signed momentum, weight decay 1e-3 (optax)"),
    "schedule_free_adamw": (schedule_free_adamw, "schedule-free AdamW, measured at the averaged "
                                                 "iterate (optax.contrib)"),
    "muon": (muon, "Muon, Newton-Schulz orthogonalized momentum for matrices (optax.contrib)"),
}
