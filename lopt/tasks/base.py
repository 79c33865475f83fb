"""The two task nouns of DESIGN.md: a Task is an inner problem, a TaskFamily samples Tasks."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import jax

Params = Any
Cfg = Any


@dataclasses.dataclass(frozen=True)
class Task:
    """An inner problem: ``init(key) -> params`` and ``loss(params, key) -> scalar``.

    ``loss`` draws its own minibatch from ``key`` out of arrays already on the device, so a
    whole inner training run is one ``lax.scan``. ``eval_loss`` (optional) is the same loss on
    held-out data, for validation meta-objectives.
    """

    init: Callable[[jax.Array], Params]
    loss: Callable[[Params, jax.Array], jax.Array]
    eval_loss: Optional[Callable[[Params, jax.Array], jax.Array]] = None


@dataclasses.dataclass(frozen=True)
class TaskFamily:
    """A distribution over Tasks: ``sample(key) -> cfg`` and ``build(cfg) -> Task``.

    ``cfg`` is a pytree of arrays so that many instances are ``vmap``ped together. A fixed task
    is a family whose ``sample`` returns an empty cfg.
    """

    sample: Callable[[jax.Array], Cfg]
    build: Callable[[Cfg], Task]
    name: str = "task_family"


def fixed_family(task: Task, name: str = "fixed") -> TaskFamily:
    """The family holding one task: an empty cfg, and ``build`` always returns ``task``."""
    return TaskFamily(sample=lambda key: {}, build=lambda cfg: task, name=name)
