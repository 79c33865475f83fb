"""The worst case beside the middle (DESIGN.md: Evaluation protocol): catastrophic runs, final-loss
ratios to a reference per task, and the worst task of a suite.

A run is **catastrophic** when it did not diverge but ends above its own initial loss, or above
``CATASTROPHE_FACTOR`` times the final loss Adam at lr 1e-3 reaches on the same instance (runs
are paired: the same evaluation key gives every optimizer the same instances). Diverged runs are
counted apart; both rank an optimizer below any with fewer. Every value here is computed on raw
(unnormalized, unclipped) losses: a normalized loss is clipped to [-2, 2] and hides how far above
Adam a run ended.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

CATASTROPHE_FACTOR = 2.0


def catastrophic(curves, adam_curves) -> np.ndarray:
    """Per run of ``curves`` [steps + 1, runs] (raw losses), whether it is catastrophic against
    ``adam_curves`` (Adam at lr 1e-3 on the same instances, at least as many steps: its row
    ``steps`` is compared). Diverged runs are False here (they are counted as diverged)."""
    curves, adam = np.asarray(curves, np.float64), np.asarray(adam_curves, np.float64)
    if adam.shape[1] != curves.shape[1] or adam.shape[0] < curves.shape[0]:
        raise ValueError(f"adam_curves must cover the same runs for at least as many steps; "
                         f"got {adam.shape} against {curves.shape}")
    final, initial = curves[-1], curves[0]
    adam_final = adam[curves.shape[0] - 1]
    finite = np.all(np.isfinite(curves), axis=0)
    above = (final > initial) | (np.isfinite(adam_final)
                                 & (final > CATASTROPHE_FACTOR * adam_final))
    return finite & above


def loss_ratio(curves, reference_curves) -> Optional[float]:
    """Mean raw final loss of ``curves`` over the reference's mean raw final loss at the same
    step, each over its runs that did not diverge: above 1, the optimizer ended worse. inf when
    every run of ``curves`` diverged; None when every reference run did."""
    curves, ref = np.asarray(curves, np.float64), np.asarray(reference_curves, np.float64)
    step = curves.shape[0] - 1
    ok = np.all(np.isfinite(curves), axis=0)
    ref_final = ref[step][np.all(np.isfinite(ref[:step + 1]), axis=0)]
    if not ref_final.size:
        return None
    if not ok.any():
        return float("inf")
    return float(np.mean(curves[-1, ok]) / np.mean(ref_final))


def worst(values: Sequence[Optional[float]], higher_is_better: bool) -> Optional[dict]:
    """The worst of per-task ``values`` (None entries skipped): {"value", "index"}."""
    present = [(v, i) for i, v in enumerate(values) if v is not None]
    if not present:
        return None
    value, index = (min if higher_is_better else max)(present)
    return {"value": float(value), "index": int(index)}
