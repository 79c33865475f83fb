"""The two task nouns of DESIGN.md: a Task is an inner problem, a TaskFamily samples Tasks."""
from __future__ import annotations

import dataclasses
import warnings
from typing import Any, Callable, Optional, Tuple

import jax

Params = Any
Cfg = Any
State = Any


@dataclasses.dataclass(frozen=True)
class Task:
    """An inner problem: ``init(key) -> params`` and ``loss(params, key) -> scalar``.

    ``loss`` draws its own minibatch from ``key`` out of arrays already on the device, so a
    whole inner training run is one ``lax.scan``. The optional parts:

    - ``valid_loss(params, key)``: the same loss on a minibatch of the **validation** split (the
      validation meta-objective, and the validation input of rules that take one);
    - task state that is not trained by the optimizer (batch norm's running statistics):
      ``init_state(key) -> state``, ``loss_and_state(params, state, key) -> (loss, state)`` in
      training mode and ``valid_loss_with_state(params, state, key)`` in inference mode;
    - ``test_metrics(params, state) -> {"loss", "accuracy"?}`` on the whole **test** split, for
      reports only;
    - ``normalizer(loss) -> loss``: the meta-objective's view of a loss (task normalization);
    - ``step_multipliers(params) -> tree of numbers``: the model's μP per-tensor step
      multipliers (``lopt.tasks.mup``), which ``lopt.mup.mup_rule`` multiplies a rule's steps by.
    """

    init: Callable[[jax.Array], Params]
    loss: Callable[[Params, jax.Array], jax.Array]
    valid_loss: Optional[Callable[[Params, jax.Array], jax.Array]] = None
    init_state: Optional[Callable[[jax.Array], State]] = None
    loss_and_state: Optional[Callable] = None
    valid_loss_with_state: Optional[Callable] = None
    test_metrics: Optional[Callable] = None
    normalizer: Optional[Callable[[jax.Array], jax.Array]] = None
    step_multipliers: Optional[Callable[[Params], Any]] = None
    # lopt 0.1's names of valid_loss and valid_loss_with_state; removed in lopt 0.4.
    eval_loss: dataclasses.InitVar[Optional[Callable]] = None
    eval_loss_with_state: dataclasses.InitVar[Optional[Callable]] = None

    def __post_init__(self, eval_loss, eval_loss_with_state):
        for old, new, value in (("eval_loss", "valid_loss", eval_loss),
                                ("eval_loss_with_state", "valid_loss_with_state",
                                 eval_loss_with_state)):
            if value is not None:
                warnings.warn(f"Task({old}=...) is now Task({new}=...); the old name is removed in "
                              "lopt 0.4", DeprecationWarning,
                              stacklevel=3)
                object.__setattr__(self, new, value)

    @property
    def has_validation(self) -> bool:
        return self.valid_loss is not None or self.valid_loss_with_state is not None

    def new_state(self, key) -> State:
        """The task state of a fresh run (``{}`` for stateless tasks)."""
        return {} if self.init_state is None else self.init_state(key)

    def train_loss(self, params, state, key):
        """(training loss, next task state): what every inner step differentiates."""
        if self.loss_and_state is None:
            return self.loss(params, key), state
        return self.loss_and_state(params, state, key)

    def validation_loss(self, params, state, key):
        """The validation loss, with the task state when the task has one."""
        if self.valid_loss_with_state is not None:
            return self.valid_loss_with_state(params, state, key)
        if self.valid_loss is None:
            raise ValueError("objective 'valid' needs a task with valid_loss (a validation split)")
        return self.valid_loss(params, key)

    def meta_view(self, loss):
        """``loss`` as the meta-objective sees it (normalized when the task is)."""
        return loss if self.normalizer is None else self.normalizer(loss)


@dataclasses.dataclass(frozen=True)
class TaskFamily:
    """A distribution over Tasks: ``sample(key) -> cfg`` and ``build(cfg) -> Task``.

    ``cfg`` is a pytree of arrays so that many instances are ``vmap``ped together. A fixed task
    is a family whose ``sample`` returns an empty cfg. ``name`` identifies the family's
    structure; caches (task normalization) are keyed by it, so it must change whenever the
    structure does.
    """

    sample: Callable[[jax.Array], Cfg]
    build: Callable[[Cfg], Task]
    name: str = "task_family"
    # The datasets its tasks train on (``lopt.tasks.datasets`` names; empty for data-free
    # problems): what keeps a meta-test set's data out of a meta-training mixture.
    datasets: Tuple[str, ...] = ()
    # Step the runs of a batch one after another (``lax.map``) rather than batched (``vmap``)
    # on a CPU: convolutions whose kernels differ per run batch into grouped convolutions,
    # which XLA:CPU runs 4-5x slower per run than one run at a time (the ResNet, whose step is
    # mostly convolution). Values are the same up to float rounding.
    sequential_runs: bool = False


def fixed_family(task: Task, name: str = "fixed") -> TaskFamily:
    """The family holding one task: an empty cfg, and ``build`` always returns ``task``."""
    return TaskFamily(sample=lambda key: {}, build=lambda cfg: task, name=name)


def pooled_family(family: TaskFamily, size: int, key) -> TaskFamily:
    """``family`` restricted to ``size`` instances drawn once from ``key``: every ``sample``
    picks one of them uniformly (Metz et al. 2019: meta-training on few tasks generalizes worse)."""
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be an integer >= 1; got {size!r}")
    pool = jax.vmap(family.sample)(jax.random.split(key, size))

    def sample(k):
        i = jax.random.randint(k, (), 0, size)
        return jax.tree.map(lambda c: c[i], pool)

    return dataclasses.replace(family, sample=sample, name=f"{family.name}_pool{size}")


def map_params(task: Task, init: Callable, to_inner: Callable,
               extra_loss: Optional[Callable] = None) -> Task:
    """``task`` seen through a change of parameters: the new task's parameters p start at
    ``init(key)`` and every loss of ``task`` is evaluated at ``to_inner(p)``, plus
    ``extra_loss(p)`` when given. Keeps the task's state, test metrics and normalizer."""
    extra = (lambda p: 0.0) if extra_loss is None else extra_loss

    def plain(fn):
        return None if fn is None else (lambda p, key: fn(to_inner(p), key) + extra(p))

    def stateful_loss(p, state, key):
        loss, state = task.loss_and_state(to_inner(p), state, key)
        return loss + extra(p), state

    def stateful_eval(p, state, key):
        return task.valid_loss_with_state(to_inner(p), state, key) + extra(p)

    def test_metrics(p, state):
        metrics = dict(task.test_metrics(to_inner(p), state))
        metrics["loss"] = metrics["loss"] + extra(p)
        return metrics

    return dataclasses.replace(
        task, init=init, loss=plain(task.loss), valid_loss=plain(task.valid_loss),
        loss_and_state=None if task.loss_and_state is None else stateful_loss,
        valid_loss_with_state=None if task.valid_loss_with_state is None else stateful_eval,
        test_metrics=None if task.test_metrics is None else test_metrics)
