"""The meta-training loop: one jitted outer step, an optax meta-optimizer, logs and exact resumes."""
from __future__ import annotations

import dataclasses
import os
import signal
import threading
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax
from tqdm.auto import tqdm

from lopt.files.checkpoints import open_checkpoints
from lopt.files.run_folder import check_resume, log_line, remove_stale_temporaries, trim_log
from lopt.outer.mixture import build_estimator, runs_per_family
from lopt.rules.base import UpdateRule
from lopt.tasks.base import TaskFamily
from lopt.tasks.mixture import Mixture


class TrainState(NamedTuple):
    """Everything an outer step reads and writes; a checkpoint is exactly this."""

    theta: Any
    opt_state: Any
    est_state: Any
    key: jax.Array
    step: jax.Array


class Interrupted(Exception):
    """Ctrl-C (SIGINT) stopped meta-training after a whole outer step; its checkpoint is saved."""

    def __init__(self, step: int, checkpoint: Optional[str]):
        where = f"checkpoint saved to {checkpoint}" if checkpoint else "no checkpoint path given"
        super().__init__(f"interrupted after outer step {step}; {where}")
        self.step, self.checkpoint = step, checkpoint


@dataclasses.dataclass
class TrainResult:
    theta: Any
    history: list
    state: TrainState


def default_meta_optimizer(learning_rate: float = 1e-3, clip_grad_norm: float = 1.0):
    """Adam on the meta-parameters after clipping the meta-gradient's global norm."""
    return optax.chain(optax.clip_by_global_norm(clip_grad_norm), optax.adam(learning_rate))


class _StopOnSigint:
    """While active, the first SIGINT only asks the loop to stop after the step in flight
    (whose input buffers are donated, so it cannot be abandoned midway); a second one
    interrupts at once. Outside the main thread signals cannot be caught: it does nothing."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame):
        if self.requested:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


def make_outer_step(estimator, meta_optimizer):
    """One outer step as a pure function of TrainState: estimate, skip if non-finite, update."""

    def outer_step(state: TrainState):
        key, sub = jax.random.split(state.key)
        meta_grad, est_state, metrics = estimator.grad(state.theta, state.est_state, sub)
        grad_norm = optax.tree.norm(meta_grad)
        finite = jnp.isfinite(grad_norm) & jnp.isfinite(metrics["meta_loss"])
        if "ok_runs" in metrics:
            # Every run non-finite: the masked mean is an empty average, not a gradient.
            finite = finite & (metrics["ok_runs"] > 0)
        updates, opt_state = meta_optimizer.update(meta_grad, state.opt_state, state.theta)
        theta = optax.apply_updates(state.theta, updates)
        # A finite gradient can still overflow theta (a huge meta-lr): check what is written.
        finite = finite & _all_finite((theta, opt_state))
        # A non-finite meta-gradient must not reach theta or the optimizer's moments.
        theta, opt_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old),
                                        (theta, opt_state), (state.theta, state.opt_state))
        if "ok_runs" in metrics:
            # No run finished its truncation: there is no loss to report, not a loss of 0.
            none = metrics["ok_runs"] == 0
            metrics = {k: (jnp.where(none, jnp.nan, v) if k.startswith(("meta_loss", "inner_loss"))
                           else v) for k, v in metrics.items()}
        metrics = dict(metrics, grad_norm=grad_norm, skipped=(~finite).astype(jnp.int32))
        return TrainState(theta, opt_state, est_state, key, state.step + 1), metrics

    return outer_step


def _all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
              if jnp.issubdtype(jnp.result_type(x), jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def _runs_per_split(estimator, family) -> int:
    """The run count that must split evenly over devices: each family's share in a mixture."""
    num = getattr(estimator, "num_tasks", 1)
    return runs_per_family(num, family) if isinstance(family, Mixture) else num


def resolve_devices(devices):
    """The local devices to run on: None (one device, no pmap), an int (the first n local
    devices) or a sequence of devices."""
    if devices is None:
        return None
    local = jax.local_devices()
    if isinstance(devices, int) and not isinstance(devices, bool):
        if not 1 <= devices <= len(local):
            raise ValueError(f"devices must be between 1 and the {len(local)} local devices, "
                             f"got {devices}")
        return local[:devices]
    devices = list(devices)
    if not devices:
        raise ValueError("devices must name at least one device")
    return devices


class _Placement:
    """How the batch of inner runs is laid out: whole on one device, or split over the local
    devices of every process (``pmap``; meta-gradients are reduced inside the estimator)."""

    AXIS = "runs"

    def __init__(self, devices, num_runs):
        self.devices = devices
        self.sharded = devices is not None and (len(devices) > 1 or jax.process_count() > 1)
        self.local = len(devices) if devices is not None else 1
        self.processes = jax.process_count() if self.sharded else 1
        total = self.local * self.processes
        if self.sharded and num_runs % total:
            raise ValueError(f"num_tasks ({num_runs}) must be a multiple of the number of devices "
                             f"({total}) to split the inner runs evenly")
        self.per_device = num_runs // total
        if self.processes > 1 and self.local != jax.local_device_count():
            raise ValueError(f"in a multi-process job devices must be all {jax.local_device_count()} "
                             f"local devices, got {self.local}")

    def local_runs(self, est_state):
        """This process's slice of the global batch of runs (the whole batch on one process)."""
        if not self.sharded:
            return est_state
        p, k = jax.process_index(), self.processes

        def mine(x):
            n = x.shape[0] // k
            return x[p * n:(p + 1) * n]

        return jax.tree.map(mine, est_state)

    def to_devices(self, state: "TrainState"):
        if not self.sharded:
            return state
        split = jax.tree.map(lambda x: x.reshape((self.local, -1) + x.shape[1:]),
                             state.est_state)
        replicated = [jax.tree.map(lambda x: jnp.broadcast_to(x, (self.local,) + jnp.shape(x)), t)
                      for t in (state.theta, state.opt_state, state.key, state.step)]
        # pmap places the leading axis over its devices itself.
        return TrainState(replicated[0], replicated[1], split, replicated[2], replicated[3])

    def to_host(self, state: "TrainState"):
        """The TrainState with this process's runs in global layout (what a checkpoint holds)."""
        if not self.sharded:
            return state
        first = [jax.tree.map(lambda x: x[0], t)
                 for t in (state.theta, state.opt_state, state.key, state.step)]
        runs = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), state.est_state)
        return TrainState(first[0], first[1], runs, first[2], first[3])

    def first(self, tree):
        return jax.tree.map(lambda x: x[0], tree) if self.sharded else tree

    def compile(self, outer_step):
        if not self.sharded:
            return jax.jit(outer_step, donate_argnums=0)
        # Across processes pmap must span every global device, each process feeding its own.
        devices = None if self.processes > 1 else self.devices
        return jax.pmap(outer_step, axis_name=self.AXIS, devices=devices, donate_argnums=0)


def train(rule: UpdateRule, family: TaskFamily | Mixture, estimator, *, num_steps: int,
          seed: int = 0, meta_optimizer: Optional[optax.GradientTransformation] = None,
          theta=None, devices=None, log_path: Optional[str] = None,
          checkpoint_path: Optional[str] = None, checkpoint_every: int = 100,
          resume: bool = True, progress: bool = True,
          run_config: Optional[dict] = None, keep_checkpoints: int = 2) -> TrainResult:
    """Meta-train ``rule`` on ``family`` with ``estimator`` (e.g. ``TBPTT(...)``) for ``num_steps``.

    ``family`` may be a ``lopt.tasks.Mixture``: each of its families then gets an equal share of
    the runs and every outer step unrolls all of them (``lopt.outer.mixture``).
    Every outer step is one jitted call. With ``devices`` (an int or a list of local devices)
    the batch of inner runs is split over those devices, and over every process of a
    ``jax.distributed`` job, with ``pmap``; meta-gradients are averaged across all of them, so
    the same seed gives the same theta on any number of devices (up to the order of the
    reduction). With ``checkpoint_path`` (a folder) the whole TrainState is written with
    orbax-checkpoint every ``checkpoint_every`` steps and at the end, the last
    ``keep_checkpoints`` kept (``lopt.files.checkpoints``: one checkpoint for all processes of a
    multi-process job); with ``resume`` the latest is continued, and the result equals that of
    an uninterrupted run bit for bit. ``log_path`` receives one JSON line of metrics per step
    (written by process 0; non-finite values as null).

    ``run_config`` (e.g. the CLI's settings that shape the run) is stored in the checkpoint; a
    resume whose rule, rule config, ``run_config`` or smaller ``num_steps`` differ from the
    checkpoint's raises ``ResumeMismatch`` before anything is written. A step whose
    meta-gradient or updated theta is not finite is skipped (``skipped`` in its metrics). On
    Ctrl-C the step in flight finishes, the checkpoint is written and ``Interrupted`` is raised.
    """
    if num_steps < 0:
        raise ValueError(f"num_steps must be a non-negative integer, got {num_steps}")
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be a positive integer, got {checkpoint_every}")
    meta_optimizer = meta_optimizer or default_meta_optimizer()
    placement = _Placement(resolve_devices(devices), _runs_per_split(estimator, family))
    if hasattr(estimator, "build"):
        est = build_estimator(estimator, rule, family,
                              axis_name=placement.AXIS if placement.sharded else None)
    elif placement.sharded:
        raise ValueError("devices needs an estimator config (with build), not a built Estimator")
    else:
        est = estimator

    key = jax.random.PRNGKey(seed)
    k_theta, k_est, k_train = jax.random.split(key, 3)
    theta = rule.init_meta(k_theta) if theta is None else theta
    state = TrainState(theta, meta_optimizer.init(theta),
                       placement.local_runs(est.init(k_est, theta)), k_train,
                       jnp.zeros((), jnp.int32))

    store = open_checkpoints(checkpoint_path, keep_checkpoints) if checkpoint_path else None
    if store is not None and resume and store.latest_step() is not None:
        check_resume(store.folder, store.metadata(), rule_name=rule.name,
                     rule_config=rule.config, run_config=run_config, num_steps=num_steps)
        state = store.restore(state)
    if store is not None:
        remove_stale_temporaries(store.folder)
    start = int(state.step)
    lead = jax.process_index() == 0
    log_path = log_path if lead else None
    if log_path:
        os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
        trim_log(log_path, start)

    step_fn = placement.compile(make_outer_step(est, meta_optimizer))
    # The step donates its input: leaves that share one buffer (equal constants an init
    # returned twice) must become distinct arrays first.
    state = placement.to_devices(jax.tree.map(jnp.copy, state))

    def write_checkpoint(s):
        host = placement.to_host(s)
        store.save(host, {"rule": rule.name, "config": rule.config, "step": int(host.step),
                          "run": run_config})

    history = []
    bar = None
    if progress and lead:
        bar = tqdm(total=num_steps, initial=start, desc="meta-train", unit="step")
    log_file = open(log_path, "a") if log_path else None
    stop = _StopOnSigint()
    try:
        with stop:
            for step in range(start, num_steps):
                state, metrics = step_fn(state)
                metrics = jax.device_get(placement.first(metrics))
                record = {"step": step, **{k: float(v) for k, v in metrics.items()}}
                history.append(record)
                if log_file:
                    log_file.write(log_line(record))
                    log_file.flush()
                if bar:
                    bar.update(1)
                    bar.set_postfix(meta_loss=f"{record['meta_loss']:.4g}", refresh=False)
                if stop.requested:
                    if store is not None:
                        write_checkpoint(state)
                    raise Interrupted(step + 1, store.folder if store else None)
                if store is not None and (step + 1) % checkpoint_every == 0:
                    write_checkpoint(state)
    finally:
        if bar:
            bar.close()
        if log_file:
            log_file.close()
    if store is not None and num_steps > start:
        write_checkpoint(state)
    host = placement.to_host(state)
    return TrainResult(theta=host.theta, history=history, state=host)
