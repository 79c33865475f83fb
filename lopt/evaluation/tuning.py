"""Tuning baselines on tuning instances and comparing rules on evaluation instances (DESIGN.md:
Evaluation protocol): learning-rate sweeps, random search, and the honest comparison."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lopt.evaluation.curves import Result, evaluate_rule, loss_curves, score
from lopt.evaluation.protocol import LR_GRID, SEARCH_SEED
from lopt.rules.base import UpdateRule
from lopt.tasks.base import TaskFamily


def lr_sweep(factory: Callable[..., UpdateRule], family: TaskFamily, key, *, num_tasks: int,
             num_steps: int, grid: Sequence[float] = LR_GRID) -> np.ndarray:
    """Curves of ``factory(learning_rate=lr)`` for every lr of ``grid``, one compile with the lr
    as an argument: shape [len(grid), steps + 1, tasks].

    The learning rates run one after another, each call batched over the tasks: nesting the
    unroll in a second loop (``vmap`` or ``lax.map`` over learning rates) made XLA's CPU code
    for recurrent tasks (an LSTM's scan inside the unroll's scan) over 1000x slower from 32
    runs on (jax 0.10.2), while one level of batching runs them at full speed.
    """
    def curves(lr):
        rule = factory(learning_rate=lr)
        return loss_curves(rule, rule.init_meta(None), family, key, num_tasks=num_tasks,
                           num_steps=num_steps)

    run = jax.jit(curves)
    return np.stack([np.asarray(run(jnp.asarray(lr, jnp.float32))) for lr in grid])


def tune_learning_rate(factory: Callable[..., UpdateRule], family: TaskFamily, key, *,
                       num_tasks: int, num_steps: int,
                       grid: Sequence[float] = LR_GRID, name: str | None = None) -> Result:
    """Run ``factory(learning_rate=lr)`` for every lr of ``grid`` (one compile) and keep the lr
    that ranks first by ``score``: fewest diverged runs, then lowest mean final loss."""
    all_curves = lr_sweep(factory, family, key, num_tasks=num_tasks, num_steps=num_steps,
                          grid=grid)
    scores = [score(c) for c in all_curves]
    best = min(range(len(grid)), key=lambda i: scores[i])
    label = name or factory(learning_rate=float(grid[best])).name
    return Result(name=label, curves=all_curves[best], learning_rate=float(grid[best]),
                  lr_at_grid_edge=best in (0, len(grid) - 1))


@dataclasses.dataclass(frozen=True)
class Instances:
    """``num_tasks`` instances of a task family drawn from ``key``: the evaluation instances
    every number is reported on, or the separate tuning instances baselines are tuned on."""

    key: Any
    num_tasks: int

    @classmethod
    def of_seed(cls, seed: int, num_tasks: int) -> "Instances":
        return cls(jax.random.PRNGKey(seed), num_tasks)


def compare(learned: Dict[str, tuple], baselines: Dict[str, Callable[..., UpdateRule]],
            family: TaskFamily, evaluation: Instances, *, num_steps: int,
            tuning: Optional[Instances] = None, grid: Sequence[float] = LR_GRID) -> list:
    """Learned rules (name -> (rule, theta)) against baselines (name -> factory), all on the
    ``evaluation`` instances.

    With ``tuning`` (the honest protocol) each baseline's learning rate is chosen on those
    separate instances and then run on the evaluation instances; without it the lr is chosen
    on the evaluation instances themselves (each baseline's best possible showing there, an
    optimistic comparison)."""
    key, num_tasks = evaluation.key, evaluation.num_tasks
    results = [evaluate_rule(rule, theta, family, key, num_tasks=num_tasks, num_steps=num_steps,
                             name=name) for name, (rule, theta) in learned.items()]
    for name, factory in baselines.items():
        if tuning is None:
            results.append(tune_learning_rate(factory, family, key, num_tasks=num_tasks,
                                              num_steps=num_steps, grid=grid, name=name))
            continue
        tuned = tune_learning_rate(factory, family, tuning.key, num_tasks=tuning.num_tasks,
                                   num_steps=num_steps, grid=grid, name=name)
        lr = tuned.learning_rate
        evaluated = evaluate_rule(factory(learning_rate=lr), {}, family, key,
                                  num_tasks=num_tasks, num_steps=num_steps, name=name)
        results.append(dataclasses.replace(evaluated, learning_rate=lr,
                                           lr_at_grid_edge=tuned.lr_at_grid_edge))
    return results


def sample_log_uniform(key, space: Dict[str, tuple], num_trials: int) -> list:
    """``num_trials`` points, each hyperparameter log-uniform in its (low, high) of ``space``."""
    keys = jax.random.split(key, len(space))
    columns = {name: np.exp(np.asarray(jax.random.uniform(
        k, (num_trials,), minval=np.log(low), maxval=np.log(high)), np.float64))
        for k, (name, (low, high)) in zip(keys, sorted(space.items()))}
    return [{name: float(col[i]) for name, col in columns.items()} for i in range(num_trials)]


def random_search(make: Callable[[dict], UpdateRule], space: Dict[str, tuple],
                  family: TaskFamily, evaluation: Instances, tuning: Instances, *,
                  num_trials: int, num_steps: int, name: str) -> Result:
    """Metz et al. 2019's stronger baseline: ``num_trials`` log-uniform draws of every
    hyperparameter in ``space``, each run on the ``tuning`` instances; the draw that ranks
    first by ``score`` is then run on the ``evaluation`` instances. One compile: the
    hyperparameters are arguments of the jitted unroll."""
    trials = sample_log_uniform(jax.random.PRNGKey(SEARCH_SEED), space, num_trials)

    def curves(hparams, instances):
        rule = make(hparams)
        return loss_curves(rule, rule.init_meta(None), family, instances.key,
                           num_tasks=instances.num_tasks, num_steps=num_steps)

    tune = jax.jit(lambda h: curves(h, tuning))
    as_args = [{k: jnp.asarray(v, jnp.float32) for k, v in t.items()} for t in trials]
    scores = [score(np.asarray(tune(h))) for h in as_args]
    best = min(range(num_trials), key=lambda i: scores[i])
    final = np.asarray(jax.jit(lambda h: curves(h, evaluation))(as_args[best]))
    return Result(name=name, curves=final, learning_rate=trials[best].get("learning_rate"),
                  hparams=trials[best])
