"""Task normalization (seed 003): a loss mapped so that a task's initial loss is 1 and the best
loss tuned Adam reaches is 0, clipped to [-2, 2]. The Adam reference of each family is computed
once, on tuning instances of its own seed, and cached on disk keyed by the family's spec."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lopt.tasks.base import TaskFamily
from lopt.tasks.mixture import Mixture

CACHE_VERSION = 1
TUNING_SEED = 0x7A5C  # tuning instances: never the evaluation seeds
NORMALIZATION_GRID = tuple(float(x) for x in np.logspace(-4, 0, 9))  # 2 per decade
CLIP = 2.0


@dataclasses.dataclass(frozen=True)
class AdamReference:
    """Where a family's loss starts and the best mean loss tuned Adam reaches within
    ``num_steps`` (over the learning rates of ``grid`` and every step), on ``num_tasks``
    tuning instances drawn from ``seed``."""

    family: str
    init_loss: float
    best_loss: float
    learning_rate: float
    num_steps: int
    num_tasks: int
    seed: int
    grid: tuple

    def normalize(self, loss):
        """(loss − best) / (initial − best), clipped to [−2, 2]: 1 at the start, 0 at Adam's best."""
        span = self.init_loss - self.best_loss
        span = span if abs(span) > 1e-12 else 1e-12
        return jnp.clip((loss - self.best_loss) / span, -CLIP, CLIP)


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
                   seed: int = TUNING_SEED, grid: Sequence[float] = NORMALIZATION_GRID,
                   cache_dir: Optional[str] = None, refresh: bool = False) -> AdamReference:
    """The family's AdamReference, read from the cache or computed (then written atomically)."""
    from lopt.evaluation import lr_sweep
    from lopt.rules import adam

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
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(dataclasses.asdict(ref), f, indent=1)
    os.replace(tmp, path)
    return ref


def normalized(family: TaskFamily, reference: AdamReference) -> TaskFamily:
    """``family`` whose tasks carry ``reference.normalize`` as their normalizer: meta-objectives
    and evaluation curves are then normalized losses; the rule still sees the raw loss."""
    if reference.family != family.name:
        raise ValueError(f"reference is for family {reference.family!r}, not {family.name!r}")

    def build(cfg):
        return dataclasses.replace(family.build(cfg), normalizer=reference.normalize)

    return TaskFamily(sample=family.sample, build=build, name=f"{family.name}_normalized")


def normalize_all(family, *, num_steps: int, **kwargs):
    """``normalized`` applied to a family, or to every family of a Mixture."""
    if isinstance(family, Mixture):
        return Mixture(tuple(normalize_all(f, num_steps=num_steps, **kwargs)
                             for f in family.families), name=f"{family.name}_normalized")
    return normalized(family, adam_reference(family, num_steps=num_steps, **kwargs))
