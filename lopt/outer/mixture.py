"""Meta-training on a Mixture: one estimator per family inside one jitted outer step.

Each family gets ``num_runs / len(families)`` inner runs; the meta-gradient is the mean of the
families' meta-gradients over the families that had at least one healthy run, so every family
weighs the same however many parameters its tasks have. Compile time is the sum of the
families' compile times and each step costs the sum of their unrolls: a mixture of k families
with num_runs runs costs about what one family with num_runs runs costs, plus k compiles.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from lopt.outer.base import Estimator
from lopt.tasks.mixture import Mixture

SUMMED = ("resets", "nonfinite_runs", "ok_runs", "inner_steps")


def runs_per_family(num_runs: int, mixture: Mixture) -> int:
    k = len(mixture.families)
    if num_runs % k:
        raise ValueError(f"num_runs ({num_runs}) must be a multiple of the {k} families of "
                         f"mixture {mixture.name!r}")
    return num_runs // k


def build_estimator(estimator, rule, family, axis_name=None) -> Estimator:
    """``estimator.build(rule, family)``, or for a Mixture the combined estimator."""
    if not isinstance(family, Mixture):
        return estimator.build(rule, family, axis_name=axis_name)
    per_family = dataclasses.replace(estimator,
                                     num_runs=runs_per_family(estimator.num_runs, family))
    parts = [per_family.build(rule, f, axis_name=axis_name) for f in family.families]
    names = [f.name for f in family.families]

    def init(key, theta):
        keys = jax.random.split(key, len(parts))
        return tuple(p.init(k, theta) for p, k in zip(parts, keys))

    def grad(theta, states, key):
        keys = jax.random.split(key, len(parts))
        results = [p.grad(theta, s, k) for p, s, k in zip(parts, states, keys)]
        # A family with no healthy run (ok_runs is summed across devices already) has no
        # gradient to offer: it is left out of the mean, and its values are never read.
        alive = [r[2]["ok_runs"] > 0 if "ok_runs" in r[2] else jnp.asarray(True)
                 for r in results]
        denom = jnp.maximum(sum(a.astype(jnp.float32) for a in alive), 1.0)

        def mean(*values):
            return sum(jnp.where(a, v, 0.0) for a, v in zip(alive, values)) / denom

        meta_grad = jax.tree.map(mean, *[r[0] for r in results])
        metrics = {"meta_loss": mean(*[r[2]["meta_loss"] for r in results]),
                   "inner_loss": sum(r[2]["inner_loss"] for r in results) / len(results)}
        for field in SUMMED:
            if all(field in r[2] for r in results):
                metrics[field] = sum(r[2][field] for r in results)
        for name, r in zip(names, results):
            metrics[f"meta_loss/{name}"] = r[2]["meta_loss"]
        return meta_grad, tuple(r[1] for r in results), metrics

    return Estimator(init=init, grad=grad, name=f"{parts[0].name}_mixture")
