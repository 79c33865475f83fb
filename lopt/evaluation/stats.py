"""Aggregates across tasks with their uncertainty, by rliable (Agarwal et al. 2021, "Deep RL at
the edge of the statistical precipice"): interquartile mean (IQM) with stratified-bootstrap
confidence intervals, and performance profiles.

Scores here are losses (lower is better), normally normalized losses (initial 1, tuned Adam's
best 0; ``lopt.tasks.normalize``), arranged as rliable's [runs, tasks] matrices. A diverged run
scores +inf: the IQM trims the worst quarter of runs, so a few divergences are trimmed and
more than a quarter make the IQM infinite, which is what the rule earned.
"""
from __future__ import annotations

import warnings
from typing import Dict, Sequence

import numpy as np

CONFIDENCE = 0.95
# rliable (with arch, pandas and scipy) takes 1.7 s to import on the 2-core development machine,
# more than all of lopt's own modules: it is imported where a statistic is computed.


def scores_matrix(final_by_task: Sequence) -> np.ndarray:
    """Per-task arrays of final (normalized) losses, one per run, as a [runs, tasks] matrix;
    NaN (a diverged run) becomes +inf. Tasks must have the same number of runs."""
    columns = [np.asarray(f, np.float64) for f in final_by_task]
    if len({c.shape for c in columns}) != 1:
        raise ValueError("every task must have the same number of runs; got "
                         f"{sorted({c.size for c in columns})}")
    matrix = np.stack(columns, axis=1)
    return np.where(np.isnan(matrix), np.inf, matrix)


def iqm(scores) -> float:
    """Interquartile mean over all runs of all tasks (rliable's ``aggregate_iqm``)."""
    from rliable import metrics

    with np.errstate(invalid="ignore"):
        value = float(metrics.aggregate_iqm(np.asarray(scores, np.float64)))
    return np.inf if np.isnan(value) else value


def iqm_with_ci(score_dict: Dict[str, np.ndarray], reps: int = 2000, seed: int = 0) -> dict:
    """Per optimizer: the IQM of its [runs, tasks] scores and a 95% stratified-bootstrap
    percentile interval (runs resampled within each task), as {"iqm", "low", "high"}."""
    from rliable import library

    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        # arch warns that RandomState is deprecated; it is how rliable seeds its bootstrap.
        warnings.simplefilter("ignore", FutureWarning)
        points, intervals = library.get_interval_estimates(
            {k: np.asarray(v, np.float64) for k, v in score_dict.items()},
            lambda s: np.array([iqm(s)]), reps=reps, confidence_interval_size=CONFIDENCE,
            random_state=np.random.RandomState(seed))
    out = {}
    for name in score_dict:
        low, high = (float(x) for x in np.asarray(intervals[name]).reshape(2))
        out[name] = {"iqm": float(points[name][0]),
                     "low": np.inf if np.isnan(low) else low,
                     "high": np.inf if np.isnan(high) else high}
    return out


def performance_profile(score_dict: Dict[str, np.ndarray], taus: Sequence[float],
                        reps: int = 500) -> dict:
    """Per optimizer: the fraction of all runs whose loss is at most τ, for each τ of ``taus``,
    with a stratified-bootstrap 95% band: {"taus", "fraction", "low", "high"}.

    rliable counts scores strictly above a threshold, so losses are negated and the threshold
    is the float just below −τ: a loss equal to τ counts (a diverged run, +inf, at no τ).
    """
    from rliable import library

    taus = np.asarray(taus, np.float64)
    negated = {k: -np.asarray(v, np.float64) for k, v in score_dict.items()}
    with np.errstate(invalid="ignore"):
        points, bands = library.create_performance_profile(
            negated, np.nextafter(-taus, -np.inf), reps=reps,
            confidence_interval_size=CONFIDENCE)
    return {name: {"taus": taus.tolist(), "fraction": np.asarray(points[name]).tolist(),
                   "low": np.asarray(bands[name])[0].tolist(),
                   "high": np.asarray(bands[name])[1].tolist()} for name in score_dict}

