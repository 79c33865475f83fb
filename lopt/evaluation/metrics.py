"""Benchmark metrics in one place: final and area-under-curve loss, divergence, speedup over a
reference optimizer (VeLO's and Celo's "speedup over tuned Adam"), optimizer-state size.

Curves are as ``lopt.evaluation.loss_curves`` returns them: shape [steps + 1, runs], row 0 the
initial loss, NaN from the step a run diverged. Every table's speedup is ``speedup``.
"""
from __future__ import annotations

from typing import Optional

import jax
import numpy as np

from lopt.evaluation.curves import diverged


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


def speedup(curve, reference_curve, *, diverged: int = 0, reference_diverged: int = 0) -> dict:
    """The speedup over a reference optimizer (tuned Adam), as VeLO (Metz et al. 2022) and Celo
    (Moudgil et al. 2025) state it: steps the reference's mean curve needs to reach the rule's
    final mean loss, over the rule's steps T.

    ``curve``: the rule's mean loss curve (T + 1 entries, over its runs that did not diverge;
    None when all did); ``reference_curve``: the reference's (T_ref + 1 entries, any T_ref, NaN
    where it has no runs left). Returns ``{"value", "bound", "reference_steps", "note"}``:
    - the rule diverged on any run: ``value`` 0 — it earned nothing, and a diverged run never
      ranks first;
    - the reference reaches the target at step s: ``value`` s / T (the reference's own
      divergences do not matter: its surviving runs' mean only flatters it);
    - it never does within T_ref: ``value`` T_ref / T with ``bound`` True ("≥").
    """
    if diverged or curve is None:
        return {"value": 0.0, "bound": False, "reference_steps": None, "note": "diverged"}
    curve = np.asarray(curve, np.float64)
    reference = np.asarray(reference_curve, np.float64)
    steps = len(curve) - 1
    needed = steps_to_reach(reference, float(curve[-1]))
    if needed is not None:
        return {"value": needed / steps, "bound": False, "reference_steps": needed, "note": ""}
    return {"value": (len(reference) - 1) / steps, "bound": True, "reference_steps": None,
            "note": "reference diverged" if reference_diverged else ""}


def speedup_of_curves(curves, reference_curves) -> dict:
    """``speedup`` of loss curves [steps + 1, runs] as ``loss_curves`` returns them."""
    mean, bad = _mean_and_diverged(curves)
    reference, reference_bad = _mean_and_diverged(reference_curves)
    return speedup(mean, reference, diverged=bad, reference_diverged=reference_bad)


def _mean_and_diverged(curves) -> tuple:
    """The mean curve over the runs that did not diverge (NaN when none is left) and how many
    did."""
    curves = np.asarray(curves, np.float64)
    bad = diverged(curves)
    if bad.all():
        return np.full(curves.shape[0], np.nan), int(bad.sum())
    return curves[:, ~bad].mean(axis=1), int(bad.sum())


def format_speedup(result: dict, fmt: str = ".2g") -> str:
    """A speedup as a table cell: "1.6", "≥ 2" for a bound, "0 (diverged)"."""
    note = f" ({result['note']})" if result["note"] else ""
    return ("≥ " if result["bound"] else "") + format(result["value"], fmt) + note


def state_bytes_per_parameter(rule, theta, params) -> float:
    """Bytes of the rule's optimizer state per parameter of ``params``, from shapes alone
    (nothing is allocated); ``theta`` None takes the shapes of ``rule.init_meta``'s."""
    if theta is None:
        theta = jax.eval_shape(rule.init_meta, jax.random.PRNGKey(0))
    # Rules told their run length (rule.start) keep no per-length state: any length gives the
    # same bytes.
    state = jax.eval_shape(lambda t, p: rule.start(t, p, 1000), theta, params)
    n_params = sum(int(np.prod(np.shape(p))) for p in jax.tree.leaves(params))
    n_bytes = sum(int(np.prod(s.shape)) * np.dtype(s.dtype).itemsize
                  for s in jax.tree.leaves(state))
    return n_bytes / max(n_params, 1)
