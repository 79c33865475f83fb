"""Benchmark metrics in one place: final and area-under-curve loss, divergence, speedup over a
reference optimizer (VeLO's and Celo's "speedup over tuned Adam"), optimizer-state size.

Every function takes loss curves as ``lopt.evaluation.loss_curves`` returns them: shape
[steps + 1, runs], row 0 the initial loss, NaN from the step a run diverged.
"""
from __future__ import annotations

from typing import Optional

import jax
import numpy as np

from lopt.evaluation import diverged


def final_loss(curves) -> np.ndarray:
    """The last row: each run's loss after the last step (NaN for a diverged run)."""
    return np.asarray(curves, np.float64)[-1]


def area_under_curve(curves) -> np.ndarray:
    """Each run's mean loss over steps 1 … T (the rows that depend on the optimizer); NaN for a
    diverged run."""
    return np.asarray(curves, np.float64)[1:].mean(axis=0)


def divergence_rate(curves) -> float:
    """The fraction of runs that diverged."""
    return float(np.mean(diverged(curves)))


def steps_to_reach(mean_curve, target: float) -> Optional[int]:
    """The first step t at which ``mean_curve[t] <= target``, or None if it never does."""
    hits = np.flatnonzero(np.asarray(mean_curve, np.float64) <= target)
    return int(hits[0]) if hits.size else None


def speedup(curves, reference_curves) -> dict:
    """How many times fewer steps a rule needs than a reference (tuned Adam) to reach the
    rule's final loss: steps the reference's mean curve needs to reach the rule's final mean
    loss, divided by the rule's steps T.

    ``speedup`` is None when either has a diverged run (no honest mean) or when the reference
    never reaches the rule's loss in its horizon T_ref; then ``at_least`` = T_ref / T bounds it
    from below (None with divergence). Above 1: the rule is faster.
    """
    curves = np.asarray(curves, np.float64)
    reference = np.asarray(reference_curves, np.float64)
    steps = curves.shape[0] - 1
    if diverged(curves).any() or diverged(reference).any():
        return {"speedup": None, "at_least": None, "target": None, "reference_steps": None}
    target = float(curves[-1].mean())
    needed = steps_to_reach(reference.mean(axis=1), target)
    if needed is None:
        return {"speedup": None, "at_least": (reference.shape[0] - 1) / steps, "target": target,
                "reference_steps": None}
    return {"speedup": needed / steps, "at_least": needed / steps, "target": target,
            "reference_steps": needed}


def state_bytes_per_parameter(rule, theta, params) -> float:
    """Bytes of the rule's optimizer state per parameter, for ``params`` (shapes only)."""
    # A rule told its run length keeps no per-length state: any length gives the same bytes.
    state = jax.eval_shape(lambda t, p: rule.start(t, p, 1000), theta, params)
    n_params = sum(int(np.prod(np.shape(p))) for p in jax.tree.leaves(params))
    n_bytes = sum(int(np.prod(s.shape)) * np.dtype(s.dtype).itemsize
                  for s in jax.tree.leaves(state))
    return n_bytes / max(n_params, 1)
