"""Checks ``lopt train`` makes before it writes anything: the output folder, the memory the run
will hold, and that an existing checkpoint belongs to this run."""
from __future__ import annotations

import dataclasses
import os
import tempfile

import jax
import numpy as np

from lopt.cli.config import (
    DistributionConfig,
    EstimatorConfig,
    EvalConfig,
    RuleConfig,
    RunConfig,
    TrainConfig,
)
from lopt.cli.value_checks import ConfigError
from lopt.files.checkpoints import open_checkpoints
from lopt.files.run_folder import check_resume
from lopt.outer.mixture import build_estimator
from lopt.outer.placement import Placement, resolve_devices, runs_per_split
from lopt.outer.tbptt import TBPTT

# Settings that do not change the meta-training trajectory, as each field declares it
# (``setting(..., run=False)`` in cli/config.py): how long (steps may only grow), where and how
# it reports, the comparison after it, and the device layout (resumes across device counts are
# exact up to the reduction order). rule_config is compared as the rule's own config.
NOT_THE_RUN = frozenset(f.name for group in (EvalConfig, RuleConfig, EstimatorConfig,
                                             RunConfig, DistributionConfig)
                        for f in dataclasses.fields(group) if not f.metadata["shapes_run"])


def run_config(cfg: TrainConfig) -> dict:
    """The settings a resumed run must share with its checkpoint (the rule's own config is
    compared separately, so the same rule_config written differently still resumes)."""
    return {k: v for k, v in cfg.flat().items() if k not in NOT_THE_RUN}


def check_out_folder(path: str, field: str = "out") -> None:
    """One line unless ``path`` is an existing writable folder or can be created as one."""
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise ConfigError(f"{field} must be a folder; {path!r} is a file")

        try:  # os.access says yes to root even where a write fails
            with tempfile.TemporaryFile(dir=path, prefix=".tmp-probe-"):
                pass
        except OSError as err:
            raise ConfigError(f"{field} folder {path!r} is not writable: {err.strerror}") from None
        return
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ConfigError(f"{field} {path!r} cannot be created: {parent!r} is a file")
    try:  # as above: only a real write tells (root, read-only and virtual file systems)
        with tempfile.TemporaryFile(dir=parent, prefix=".tmp-probe-"):
            pass
    except OSError as err:
        raise ConfigError(f"{field} {path!r} cannot be created: {parent!r} is not writable "
                          f"({err.strerror})") from None


def make_out_folder(path: str) -> None:
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"out {path!r} cannot be created: {err.strerror}") from None


PER_STEP_BYTES = 16


def physical_memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


# Where a container's memory limit is (cgroup v2, then v1); "max" or a huge v1 value: none.
CGROUP_LIMITS = ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")


def memory_limit_bytes(cgroup_files=CGROUP_LIMITS) -> int:
    """The memory this process may use: the physical memory, or its cgroup's limit when that
    is lower (a container, a scheduler's job), which is what the kernel enforces."""
    limit = physical_memory_bytes()
    for path in cgroup_files:
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit():
            limit = min(limit, int(text))
    return limit


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def _size(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _nbytes(tree) -> int:
    return sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def estimated_state_bytes(rule, family, estimator) -> int:
    """Bytes of theta and the estimator's state (every inner run's parameters and optimizer
    state), from shapes alone: a lower bound on what meta-training holds in memory."""

    theta = jax.eval_shape(rule.init_meta, jax.random.PRNGKey(0))
    est = build_estimator(estimator, rule, family, axis_name=None)
    state = jax.eval_shape(est.init, jax.random.PRNGKey(0), theta)
    return _nbytes(theta) + _nbytes(state)


def check_memory(rule, family, estimator, limit: int | None = None) -> None:
    """Refuse, in one line, a run whose state alone would not fit in this process's memory
    limit (``memory_limit_bytes``)."""

    limit = memory_limit_bytes() if limit is None else limit
    over = f"more than this process's limit of {_gib(limit)}"
    try:
        theta = jax.eval_shape(rule.init_meta, jax.random.PRNGKey(0))
    except (ValueError, TypeError) as err:
        raise ConfigError(f"rule_config: {err}") from None
    t = _nbytes(theta)
    if t > limit:
        raise ConfigError(f"rule_config: theta alone needs {_gib(t)}, {over}; use smaller "
                          "sizes")
    # Meta-training holds theta, its meta-gradient and Adam's two moments at once.
    if 4 * t > limit:
        raise ConfigError(f"rule_config: meta-training needs at least {_gib(4 * t)} (theta, its "
                          f"meta-gradient and Adam's two moments: 4 x {_gib(t)}), {over}; use "
                          "smaller sizes")
    runs = getattr(estimator, "num_runs", 1) * (2 if hasattr(estimator, "sigma") else 1)
    # Perturbation estimators (ES, PES) give every inner run its own theta.
    per_run = runs * t if hasattr(estimator, "sigma") else 0
    if 4 * t + per_run > limit:
        raise ConfigError(f"num_runs: the {runs} inner runs' perturbed thetas need "
                          f"{_gib(per_run)}, {over}; use fewer tasks or smaller rule sizes")
    # Every step of a truncation keeps a few numbers per run (losses, weights, flags).
    per_step = getattr(estimator, "truncation", 1) * runs * PER_STEP_BYTES
    if per_step > limit:
        raise ConfigError(f"truncation x num_runs: {getattr(estimator, 'truncation', 1)} "
                          f"steps of {runs} runs need at least {_gib(per_step)} for their "
                          f"per-step losses alone, {over}; use a shorter truncation or fewer "
                          "tasks")
    needed = estimated_state_bytes(rule, family, estimator) + 3 * t + per_run + per_step
    if needed > limit:
        raise ConfigError(f"num_runs: the inner runs' state and meta-training need at least "
                          f"{_gib(needed)}, {over}; use fewer tasks or smaller rule sizes")


def check_runs_memory(rule, family, runs: int, steps: int, fields: str,
                      limit: int | None = None) -> None:
    """Refuse, in one line naming ``fields``, ``runs`` inner runs of ``steps`` steps at once
    (an evaluation, a tuning sweep's instances, a meta-validation) whose parameters, rule
    state and loss curves cannot fit in this process's memory limit; sized from shapes
    (one run's state through ``jax.eval_shape``), before any work."""
    limit = memory_limit_bytes() if limit is None else limit
    theta = _nbytes(jax.eval_shape(rule.init_meta, jax.random.PRNGKey(0)))
    families = getattr(family, "families", (family,))
    one = max(estimated_state_bytes(rule, f, TBPTT(num_runs=1, truncation=1, horizon=1))
              - theta for f in families)
    needed = runs * one + runs * (steps + 1) * PER_STEP_BYTES
    if needed > limit:
        raise ConfigError(f"{fields}: {runs} runs of {steps} steps at once need at least "
                          f"{_size(needed)} ({_size(one)} of state per run, {PER_STEP_BYTES} "
                          "bytes per run and step), more than this process's limit of "
                          f"{_gib(limit)}; use fewer runs or steps")


def check_comparison_memory(rule, family, cfg, limit: int | None = None) -> None:
    """``check_runs_memory`` for ``lopt train``'s comparison and ``lopt eval``: the evaluation
    instances and the baselines' tuning instances."""
    check_runs_memory(rule, family, cfg.eval_tasks, cfg.eval_steps, "eval_tasks x eval_steps",
                      limit)
    check_runs_memory(rule, family, min(cfg.tune_tasks, cfg.eval_tasks), cfg.eval_steps,
                      "tune_tasks x eval_steps", limit)


def check_devices(devices, estimator, family, model_parallel: int) -> None:
    """One line unless the inner runs split over these local devices as a runs × model mesh."""
    try:
        Placement(resolve_devices(devices), runs_per_split(estimator, family),
                  model=model_parallel)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def check_checkpoint(cfg: TrainConfig, rule, checkpoint: str) -> None:
    """Refuse (one line) to resume ``checkpoint`` when it came from another run."""
    if not (cfg.run.resume and os.path.exists(checkpoint)):
        return
    store = open_checkpoints(checkpoint)
    if store.latest_step() is None:
        return
    def check(meta):
        check_resume(store.folder, meta, rule_name=rule.name, rule_config=rule.config,
                     run_config=run_config(cfg), num_steps=cfg.run.steps)

    if hasattr(store, "newest_metadata"):
        store.newest_metadata(check)  # a foreign newest folder is passed over, as train does
    else:
        check(store.metadata())
