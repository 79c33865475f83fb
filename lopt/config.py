"""Typed configs for the CLI and scripts; every bad value gets one line naming the field."""
from __future__ import annotations

import dataclasses
from typing import Sequence

from lopt.outer import ESTIMATORS
from lopt.outer.common import WEIGHTINGS
from lopt.rules import HAND_DESIGNED, LEARNED
from lopt.tasks import FAMILIES


class ConfigError(ValueError):
    """A config value outside its allowed range; the message names the field."""


DEFAULT_BASELINES = ("sgd", "nesterov", "rmsprop", "adam")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """How a learned rule is compared against tuned baselines on held-out instances."""

    task: str = "quadratic"
    eval_tasks: int = 256
    eval_steps: int = 100
    eval_seed: int = 12345
    baselines: Sequence[str] = DEFAULT_BASELINES

    def validate(self) -> "EvalConfig":
        _one_of("task", self.task, FAMILIES)
        _at_least("eval_tasks", self.eval_tasks, 2)
        _at_least("eval_steps", self.eval_steps, 1)
        _integer("eval_seed", self.eval_seed)
        for name in self.baselines:
            _one_of("baselines", name, HAND_DESIGNED)
        return self


@dataclasses.dataclass(frozen=True)
class TrainConfig(EvalConfig):
    """``lopt train``: meta-train a learned rule, save it, and compare it against baselines.

    The defaults meta-train the L2L LSTM on the quadratic family on 2 CPU cores in a few minutes.
    """

    rule: str = "l2l_lstm"
    estimator: str = "tbptt"
    steps: int = 1500
    num_tasks: int = 128
    truncation: int = 20
    horizon: int = 100
    second_derivatives: bool = False
    weighting: str = "mean"
    meta_lr: float = 3e-3
    clip_grad_norm: float = 1.0
    seed: int = 0
    out: str = "runs/l2l_quadratic"
    checkpoint_every: int = 100
    resume: bool = True
    progress: bool = True

    def validate(self) -> "TrainConfig":
        super().validate()
        _one_of("rule", self.rule, LEARNED)
        _one_of("estimator", self.estimator, ESTIMATORS)
        _at_least("steps", self.steps, 1)
        _at_least("num_tasks", self.num_tasks, 1)
        _at_least("truncation", self.truncation, 1)
        _at_least("horizon", self.horizon, 1)
        _one_of("weighting", self.weighting, WEIGHTINGS)
        _positive("meta_lr", self.meta_lr)
        _positive("clip_grad_norm", self.clip_grad_norm)
        _integer("seed", self.seed)
        _at_least("checkpoint_every", self.checkpoint_every, 1)
        if not self.out:
            raise ConfigError("out must be a non-empty folder path")
        return self


def _one_of(field, value, allowed):
    if value not in allowed:
        raise ConfigError(f"{field} must be one of {', '.join(sorted(allowed))}; got {value!r}")


def _integer(field, value):
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{field} must be an integer; got {value!r}")


def _at_least(field, value, low):
    _integer(field, value)
    if value < low:
        raise ConfigError(f"{field} must be an integer >= {low}; got {value!r}")


def _positive(field, value):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 \
            or value == float("inf"):
        raise ConfigError(f"{field} must be a finite number > 0; got {value!r}")
