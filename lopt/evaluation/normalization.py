"""The normalization reference of a task family: where its loss starts and the best mean loss
tuned Adam reaches, on tuning instances of its own seed (``protocol.NORMALIZATION_SEED``), cached
on disk keyed by the family's spec. ``lopt.tasks.normalized`` maps losses with it."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Optional, Sequence

import jax
import numpy as np

from lopt.evaluation.protocol import NORMALIZATION_GRID, NORMALIZATION_SEED
from lopt.evaluation.tuning import lr_sweep
from lopt.files.atomic import write_json
from lopt.rules.hand_designed import adam
from lopt.tasks.base import TaskFamily
from lopt.tasks.mixture import Mixture
from lopt.tasks.normalize import AdamReference, normalized

CACHE_VERSION = 1


def default_cache_dir() -> str:
    return os.environ.get("LOPT_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "lopt")


def cache_path(family: TaskFamily, num_steps: int, num_tasks: int, seed: int,
               grid: Sequence[float], cache_dir: Optional[str] = None) -> str:
    """The cache file of one (family spec, reference settings) pair."""
    spec = json.dumps({"version": CACHE_VERSION, "family": family.name, "num_steps": num_steps,
                       "num_tasks": num_tasks, "seed": seed, "grid": list(grid)}, sort_keys=True)
    digest = hashlib.sha256(spec.encode()).hexdigest()[:16]
    slug = "".join(c if c.isalnum() or c in "._-" else "_" for c in family.name)[:60]
    return os.path.join(cache_dir or default_cache_dir(), "normalization", f"{slug}-{digest}.json")


def adam_reference(family: TaskFamily, *, num_steps: int, num_tasks: int = 8,
                   seed: int = NORMALIZATION_SEED, grid: Sequence[float] = NORMALIZATION_GRID,
                   cache_dir: Optional[str] = None, refresh: bool = False) -> AdamReference:
    """The family's AdamReference, read from the cache or computed (then written atomically)."""
    grid = tuple(float(g) for g in grid)
    path = cache_path(family, num_steps, num_tasks, seed, grid, cache_dir)
    if os.path.exists(path) and not refresh:
        try:
            with open(path) as f:
                stored = json.load(f)
            stored["grid"] = tuple(stored["grid"])
            ref = AdamReference(**stored)
            if ref.family == family.name:
                return ref
        except (ValueError, TypeError, KeyError):
            pass  # a damaged cache entry is recomputed
    curves = lr_sweep(adam, family, jax.random.PRNGKey(seed), num_tasks=num_tasks,
                      num_steps=num_steps, grid=grid)
    means = curves.mean(axis=2)  # [lrs, steps + 1]
    means = np.where(np.isfinite(means), means, np.inf)
    lr_index, _ = np.unravel_index(int(np.argmin(means)), means.shape)
    ref = AdamReference(family=family.name, init_loss=float(means[0, 0]),
                        best_loss=float(means.min()), learning_rate=grid[int(lr_index)],
                        num_steps=num_steps, num_tasks=num_tasks, seed=seed, grid=grid)
    # Strict JSON has no inf: a run-away family is not cached.
    if np.isfinite([ref.init_loss, ref.best_loss]).all():
        write_json(path, dataclasses.asdict(ref))
    return ref


def normalize_all(family, *, num_steps: int, **kwargs):
    """``normalized`` applied to a family, or to every family of a Mixture."""
    if isinstance(family, Mixture):
        return Mixture(tuple(normalize_all(f, num_steps=num_steps, **kwargs)
                             for f in family.families), name=f"{family.name}_normalized")
    return normalized(family, adam_reference(family, num_steps=num_steps, **kwargs))
