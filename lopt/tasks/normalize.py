"""Task normalization (Metz et al. 2019, "Understanding and correcting pathologies in the training
of learned optimizers"): a loss mapped so that a task's initial loss is 1 and the best loss tuned
Adam reaches is 0, clipped to [-2, 2]. ``normalized`` applies a reference to a family; computing
the reference (tuned Adam on tuning instances) is evaluation's job:
``lopt.evaluation.normalization.adam_reference``."""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from lopt.tasks.base import TaskFamily

CLIP = 2.0


@dataclasses.dataclass(frozen=True)
class AdamReference:
    """Where a family's loss starts and the best mean loss tuned Adam reaches within
    ``num_steps`` (over the learning rates of ``grid`` and every step), on ``num_tasks``
    tuning instances drawn from ``seed``."""

    family: str
    init_loss: float
    best_loss: float
    learning_rate: float
    num_steps: int
    num_tasks: int
    seed: int
    grid: tuple

    def normalize(self, loss):
        """(loss − best) / (initial − best), clipped to [−2, 2]: 1 at the start, 0 at Adam's
        best."""
        span = self.init_loss - self.best_loss
        span = span if abs(span) > 1e-12 else 1e-12
        return jnp.clip((loss - self.best_loss) / span, -CLIP, CLIP)


def normalized(family: TaskFamily, reference: AdamReference) -> TaskFamily:
    """``family`` whose tasks carry ``reference.normalize`` as their normalizer: meta-objectives
    and evaluation curves are then normalized losses; the rule still sees the raw loss."""
    if reference.family != family.name:
        raise ValueError(f"reference is for family {reference.family!r}, not {family.name!r}")

    def build(cfg):
        return dataclasses.replace(family.build(cfg), normalizer=reference.normalize)

    return dataclasses.replace(family, build=build, name=f"{family.name}_normalized")
