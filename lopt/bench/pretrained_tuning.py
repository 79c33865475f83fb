"""The learning rates of ``lopt bench pretrained``: each optimizer's sweep over the grid on
every task's tuning instances, the one rate best across the suite and the best per task, and
the factories its rows run (a hand-designed rule at a learning rate, a learned one at a step
scale, either under the common schedule). DESIGN.md: Evaluation protocol (nothing is tuned on
evaluation instances)."""
from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import optax

from lopt.evaluation import lr_sweep, score
from lopt.evaluation.protocol import TUNE_SEED
from lopt.rules import make_rule
from lopt.rules.base import scaled_by_schedule


def cosine(steps: int):
    """The common schedule every optimizer also runs under: a multiplier rising linearly from
    0 over the first 5% of ``steps``, then cosine-decayed to 0 at ``steps``."""
    return optax.warmup_cosine_decay_schedule(0.0, 1.0, max(1, steps // 20), steps, 0.0)


def hand_rule(factory, schedule_steps=None):
    """lr -> (rule, {}) of a hand-designed ``factory``, under ``cosine`` when given steps."""
    def make(lr):
        rule = factory(learning_rate=lr)
        return (scaled_by_schedule(rule, cosine(schedule_steps)) if schedule_steps else rule), {}
    return make


def learned_rule(rule, theta, schedule_steps=None):
    """lr -> (rule at step_scale lr, theta); None keeps the rule's own step scale."""
    def make(lr):
        r = rule if lr is None else make_rule(rule.name, **{**rule.config, "step_scale": lr})
        return (scaled_by_schedule(r, cosine(schedule_steps)) if schedule_steps else r), theta
    return make


def stage_name(label: str) -> str:
    return label.replace(", ", "_").replace(" ", "_")


def _sweep_scores(factory, family, steps, tune_tasks, grid) -> list:
    """Per lr of the grid on the tuning instances: (diverged runs, mean final normalized loss)."""

    curves = lr_sweep(factory, family, jax.random.PRNGKey(TUNE_SEED), num_tasks=tune_tasks,
                      num_steps=steps, grid=grid)
    return [list(score(c)) for c in curves]


def best_index(scores) -> int:
    """The grid index ranked first: fewest diverged runs, then lowest mean final loss."""
    return min(range(len(scores)), key=lambda i: tuple(scores[i]))


def global_lr_index(sweeps: list) -> int:
    """The grid index whose lr is best across the suite: fewest diverged runs over all tasks,
    then the lowest mean over tasks of the mean final normalized loss."""
    def key(i):
        return (sum(s[i][0] for s in sweeps), float(np.mean([s[i][1] for s in sweeps])))
    return min(range(len(sweeps[0])), key=key)


def tuned_lrs(suite, sz, labels, steps, norm, factories, tags=None) -> tuple:
    """Each factory's sweep over the grid on every task's tuning instances (cached; ``tags``:
    name -> what else identifies the factory, e.g. its theta), the one lr best across the suite
    and the best per task."""
    sweeps = {(label, name): suite.cached(
        f"sweep_{stage_name(name)}_{stage_name(label)}",
        lambda label=label, f=f: _sweep_scores(f, norm[label], steps[label], sz.tune_tasks,
                                               sz.grid),
        {"steps": steps[label], "tune": sz.tune_tasks, "grid": list(sz.grid),
         "family": norm[label].name, **(tags or {}).get(name, {})})
        for label in suite.in_order(labels) for name, f in factories.items()}
    # An interim report may lack a factory's sweeps: its lrs are None, its rows pending.
    done = [n for n in factories if all(sweeps[(label, n)] is not None for label in labels)]
    once = {name: (sz.grid[global_lr_index([sweeps[(label, name)] for label in labels])]
                   if name in done else None) for name in factories}
    per_task = {(label, name): sz.grid[best_index(sweeps[(label, name)])] if name in done else None
                for label in labels for name in factories}
    return once, per_task


def _fixed_theta(rule, theta):
    """factory(learning_rate) -> ``rule`` at step_scale = learning_rate whose init_meta gives
    ``theta`` (what ``lr_sweep`` runs)."""
    def factory(learning_rate):
        r = make_rule(rule.name, **{**rule.config, "step_scale": learning_rate})
        return dataclasses.replace(r, init_meta=lambda key: theta)
    return factory


def tuned_learned_plan(suite, sz, labels, steps, norm, learned, names, ids) -> tuple:
    """({name: the step scale best across the suite}, the plan of its "(global lr)" and
    "(per-task lr)" rows) for each learned optimizer of ``names``, from its sweep on every
    task's tuning instances. Optimizers equal but for their default step scale (a version
    that only re-chose it) share one sweep, which sets the step scale itself."""
    sweeper = {n: next(m for m in names if _sweep_identity(learned[m])
                       == _sweep_identity(learned[n])) for n in names}
    once, per_task = tuned_lrs(suite, sz, labels, steps, norm, {
        n: _fixed_theta(*learned[n]) for n in names if sweeper[n] == n}, ids)
    plan = []
    for n in names:
        rule, theta = learned[n]
        make = lambda s, r=rule, t=theta: learned_rule(r, t, s)
        once[n] = once[sweeper[n]]
        plan += [(f"{n} (global lr)", make, once[n], False, ids[n]),
                 (f"{n} (per-task lr)", make,
                  {label: per_task[(label, sweeper[n])] for label in labels}, False, ids[n])]
    return once, plan


def _sweep_identity(learned) -> tuple:
    """What a step-scale sweep of (rule, theta) depends on: all but the default step scale."""
    rule, theta = learned
    config = {k: v for k, v in rule.config.items() if k != "step_scale"}
    return rule.name, json.dumps(config, sort_keys=True), checksum(theta)


def checksum(theta) -> float:
    return float(sum(np.sum(np.abs(np.asarray(x))) for x in jax.tree.leaves(theta)))
