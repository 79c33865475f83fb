"""Inner training runs on evaluation instances: loss curves, their divergence and ranking, and
test-split metrics after training."""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from lopt.outer.unroll import UnrollOptions, broadcast_runs, truncated_unroll
from lopt.rules.base import UpdateRule, check_rule
from lopt.tasks.base import TaskFamily


def evaluation_unroll(num_tasks: int, num_steps: int) -> UnrollOptions:
    """The unroll of an evaluation: ``num_tasks`` runs trained ``num_steps`` steps from step 0
    (no stagger), each on one instance for the whole run (horizon beyond the last step)."""
    return UnrollOptions(num_runs=num_tasks, truncation=num_steps, horizon=num_steps + 1,
                         stagger=False, remat="none")


def loss_curves(rule: UpdateRule, theta, family: TaskFamily, key, *, num_tasks: int,
                num_steps: int) -> jax.Array:
    """Train ``num_tasks`` instances for ``num_steps`` steps; returns f(θ_t), shape [steps+1,
    tasks].

    The same ``key`` gives the same instances and initial parameters for every rule, so curves
    of different rules are paired comparisons. Row 0 is f(θ_0); row t is f(θ_t) after t updates.
    A run that diverges stays on its instance and its curve is NaN from the first step whose
    loss (the rule's minibatch loss or the curve's own) was non-finite: see ``diverged``.
    """
    check_rule(rule)
    for argument, value in (("num_tasks", num_tasks), ("num_steps", num_steps)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{argument} must be a positive integer, got {value!r}")
    return curves_and_norm_growth(rule, theta, family, key, num_tasks=num_tasks,
                                  num_steps=num_steps)[0]


def curves_and_norm_growth(rule: UpdateRule, theta, family: TaskFamily, key, *, num_tasks: int,
                           num_steps: int) -> tuple:
    """``loss_curves`` and, per run, ‖θ_T‖ / ‖θ_0‖ (the global norm of the parameters after the
    run over before it): whether an optimizer lets the weights grow (issue 35)."""
    opts = evaluation_unroll(num_tasks, num_steps)
    batch = opts.init_runs(rule, family, theta, key)
    end, out = truncated_unroll(rule, family, broadcast_runs(theta, num_tasks), batch, opts,
                                reset_nonfinite=False)
    # out.loss is the raw loss the rule saw; every row of the curve is the loss as the
    # meta-objective sees it (normalized when the family is).
    first = jax.vmap(lambda cfg, loss: family.build(cfg).meta_view(loss))(batch.cfg, out.loss[0])
    curves = jnp.concatenate([first[None], out.meta_loss], axis=0)
    # Row t + 1 is also lost when the loss the rule saw at step t was not finite.
    bad = jnp.concatenate([~jnp.isfinite(first)[None], ~out.finite], axis=0)
    per_run = lambda tree: jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32)),
                                                axis=tuple(range(1, x.ndim)))
                                        for x in jax.tree.leaves(tree)))
    growth = per_run(end.params) / per_run(batch.params)
    return jnp.where(jnp.cumsum(bad, axis=0) > 0, jnp.nan, curves), growth


def diverged(curves) -> np.ndarray:
    """Per run (last axis), whether its curve holds a non-finite value: the run diverged."""
    return ~np.all(np.isfinite(np.asarray(curves)), axis=-2)


def score(curves) -> tuple:
    """The ranking key of one optimizer's curves [steps + 1, tasks]: (diverged runs, mean final
    loss over the others). Lower is better, so any divergence ranks below none at all."""
    bad = diverged(curves)
    final = np.asarray(curves, np.float64)[-1][~bad]
    return int(bad.sum()), float(np.mean(final)) if final.size else float("inf")


def rank_key(summary: dict) -> tuple:
    """``score`` read back from a ``Result.summary()``."""
    mean = summary["final_mean"]
    # NaN compares false both ways and would sort anywhere: it ranks with "no loss at all".
    return summary["diverged"], float("inf") if mean is None or mean != mean else mean


@dataclasses.dataclass
class Result:
    """One optimizer's curves on the evaluation instances and, for tuned baselines, its lr."""

    name: str
    curves: np.ndarray  # [steps + 1, tasks]
    learning_rate: float | None = None
    lr_at_grid_edge: bool = False
    hparams: dict | None = None  # every tuned hyperparameter, for random-search baselines

    @property
    def final(self) -> np.ndarray:
        return self.curves[-1]

    @property
    def diverged(self) -> np.ndarray:
        return diverged(self.curves)

    def summary(self) -> dict:
        """Counts and statistics for tables and JSON: the loss statistics cover the runs that
        did not diverge (``None`` when every run did); ``diverged`` counts the others."""
        ok = ~self.diverged
        final, curves = self.final[ok], self.curves[:, ok]

        def stat(fn, values, min_count=1):
            return float(fn(values)) if values.size >= min_count else None

        return {
            "name": self.name,
            "learning_rate": self.learning_rate,
            "lr_at_grid_edge": self.lr_at_grid_edge,
            "hparams": self.hparams,
            "num_tasks": int(self.curves.shape[1]),
            "diverged": int((~ok).sum()),
            "final_mean": stat(np.mean, final),
            "final_sem": stat(lambda f: np.std(f, ddof=1) / np.sqrt(len(f)), final, 2),
            "final_median": stat(np.median, final),
            "mean_curve": ([float(x) for x in np.mean(curves, axis=1)] if ok.any() else None),
        }


def final_test_metrics(rule: UpdateRule, theta, family: TaskFamily, key, *, num_tasks: int,
                       num_steps: int) -> dict:
    """Train ``num_tasks`` instances for ``num_steps`` steps, then report each one's
    ``test_metrics`` (loss, and accuracy for classifiers, on the whole test split): a dict of
    arrays of shape [tasks]. The same ``key`` gives the same instances as ``loss_curves``."""
    opts = evaluation_unroll(num_tasks, num_steps)

    @jax.jit
    def run(theta):
        batch = opts.init_runs(rule, family, theta, key)
        batch, _ = truncated_unroll(rule, family, broadcast_runs(theta, num_tasks), batch, opts,
                                    reset_nonfinite=False)

        def one(cfg, params, state, rule_state):
            task = family.build(cfg)
            if rule.eval_params is not None:
                params = rule.eval_params(rule_state, params)
            if task.test_metrics is None:
                raise ValueError(f"task family {family.name!r} has no test split")
            return task.test_metrics(params, state if task.init_state is not None else None)

        return jax.vmap(one)(batch.cfg, batch.params, batch.task_state, batch.rule_state)

    return {k: np.asarray(v) for k, v in run(theta).items()}


def evaluate_rule(rule: UpdateRule, theta, family: TaskFamily, key, *, num_tasks: int,
                  num_steps: int, name: str | None = None) -> Result:
    """The curves of one rule with fixed theta on the evaluation instances."""
    run = jax.jit(lambda th: loss_curves(rule, th, family, key, num_tasks=num_tasks,
                                         num_steps=num_steps))
    return Result(name=name or rule.name, curves=np.asarray(run(theta)))
