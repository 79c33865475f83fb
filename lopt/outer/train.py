"""The meta-training loop: one jitted outer step, an optax meta-optimizer, logs and exact
resumes."""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import signal
import sys
import threading
import time
from typing import Any, Callable, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import optax
from tqdm.auto import tqdm

from lopt.files.checkpoints import open_checkpoints
from lopt.files.metric_writers import MetricWriter, open_writers
from lopt.files.run_folder import check_resume, log_line, remove_stale_temporaries, trim_log
from lopt.outer.base import Estimator
from lopt.outer.mixture import build_estimator
from lopt.outer.placement import Placement, resolve_devices, runs_per_split
from lopt.outer.signals import STOP_SIGNALS, raise_in_main
from lopt.rules.base import UpdateRule, check_rule
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
    """Ctrl-C (SIGINT) or SIGTERM (what schedulers and preemptible VMs send first) stopped
    meta-training after a whole outer step; its checkpoint is saved."""

    def __init__(self, step: int, checkpoint: Optional[str], signum: int = signal.SIGINT):
        where = f"checkpoint saved to {checkpoint}" if checkpoint else "no checkpoint path given"
        what = "interrupted" if signum == signal.SIGINT else \
            f"terminated ({signal.Signals(signum).name})"
        super().__init__(f"{what} after outer step {step}; {where}")
        self.step, self.checkpoint, self.signum = step, checkpoint, signum


class Abandoned(KeyboardInterrupt):
    """A second SIGINT or SIGTERM: the step in flight was abandoned, nothing saved since the
    last checkpoint."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# The records train() returns: the last this many steps'; the log file holds every one, so a
# job of millions of steps runs in flat memory.
HISTORY_LIMIT = 10_000


@dataclasses.dataclass
class TrainResult:
    """The meta-trained theta, the last ``HISTORY_LIMIT`` steps' metrics of this invocation
    (``steps_run`` counts them all; ``RunFiles.log_path`` keeps every step of the run) and
    the final TrainState."""
    theta: Any
    history: list
    state: TrainState
    steps_run: int = 0


def default_meta_optimizer(learning_rate: float = 1e-3, clip_grad_norm: float = 1.0):
    """Adam on the meta-parameters after clipping the meta-gradient's global norm."""
    return optax.chain(optax.clip_by_global_norm(clip_grad_norm), optax.adam(learning_rate))



class _StopOnSignal:
    """While active, the first SIGINT or SIGTERM only asks the loop to stop after the step in
    flight (whose input buffers are donated, so it cannot be abandoned midway) and checkpoint;
    a second one abandons the step at once (``Abandoned``). Outside the main thread signals
    cannot be caught: it does nothing."""

    def __init__(self):
        self.requested = None  # the signal that asked to stop
        self._previous = {}

    def _handle(self, signum, frame):
        if self.requested is not None:
            self._restore()
            raise_in_main(signum, frame, Abandoned(signum))
            return
        self.requested = signum

    def _restore(self):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}
        return self

    def __exit__(self, *exc):
        self._restore()
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


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How one meta-training goes: ``num_steps`` outer steps from ``seed`` with
    ``meta_optimizer`` (``default_meta_optimizer()`` when None), from ``theta`` (the rule's
    ``init_meta`` when None), with a progress bar when ``progress``. With ``validate`` (theta
    -> a dict of floats, e.g. ``lopt.evaluation.meta_validation``) the theta after every
    ``validate_every``-th step (and the last) is scored and the dict joins that step's logged
    metrics under ``valid/`` names: meta-validation, which never touches the meta-gradient."""

    num_steps: int
    seed: int = 0
    meta_optimizer: Optional[optax.GradientTransformation] = None
    theta: Any = None
    progress: bool = True
    validate: Optional[Callable[[Any], dict]] = None
    validate_every: int = 100

    def __post_init__(self):
        if not isinstance(self.num_steps, int) or self.num_steps < 0:
            raise ValueError(f"num_steps must be a non-negative integer, got {self.num_steps!r}")
        if not isinstance(self.validate_every, int) or self.validate_every < 1:
            raise ValueError(f"validate_every must be a positive integer, got "
                             f"{self.validate_every}")


@dataclasses.dataclass(frozen=True)
class RunFiles:
    """What a meta-training writes. ``log_path`` receives one strict-JSON line of metrics per
    step (from process 0). With ``checkpoint_path`` (a folder) the TrainState is saved with
    orbax-checkpoint every ``checkpoint_every`` steps and at the end, the last
    ``keep_checkpoints`` kept (``lopt.files.checkpoints``), and with ``resume`` the latest is
    continued. ``run_config`` (the settings that shape the run) is stored with each checkpoint:
    a resume whose rule, rule config, ``run_config`` or smaller ``num_steps`` differ is refused
    (``ResumeMismatch``) before anything is written. With ``logdir`` every step's metrics,
    its inner steps per second and the meta-validation scores are also written as TensorBoard
    events there, and to each of ``writers`` (``lopt.files.metric_writers``, e.g. a
    ``WandbWriter``); the JSONL log holds only what is deterministic (no wall times)."""

    log_path: Optional[str] = None
    checkpoint_path: Optional[str] = None
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    resume: bool = True
    run_config: Optional[dict] = None
    logdir: Optional[str] = None
    writers: Tuple[MetricWriter, ...] = ()

    def __post_init__(self):
        if not isinstance(self.checkpoint_every, int) or self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be a positive integer, got "
                             f"{self.checkpoint_every}")


def train(rule: UpdateRule, family: TaskFamily | Mixture, estimator,
          run: Optional[RunOptions] = None, files: Optional[RunFiles] = None, *, devices=None,
          model_parallel: int = 1, **options) -> TrainResult:
    """Meta-train ``rule`` on ``family`` with ``estimator`` (e.g. ``TBPTT(...)``).

    ``run`` (RunOptions) says how long and from where, ``files`` (RunFiles) what is logged and
    checkpointed; their fields may also be given as keywords (``num_steps=100, seed=0,
    log_path=...``). ``family`` may be a ``lopt.tasks.Mixture``: each of its families then
    gets an equal share of the runs and every outer step unrolls all of them
    (``lopt.outer.mixture``). Every outer step is one jitted call. With ``devices`` (an int or
    a list of local devices) the batch of inner runs is split over those devices, and over
    every process of a ``jax.distributed`` job: the outer step is a ``jax.shard_map`` over a
    device mesh (``lopt.outer.placement``) and meta-gradients are averaged across it, so the
    same seed gives the same theta on any number of devices (up to the order of the
    reduction). With ``model_parallel`` = m > 1 the devices form a ``runs × model`` mesh:
    each group of m devices holds one block of runs, and a tensor-parallel task
    (``lopt.tasks.tensor_parallel``) splits its model over the group. A resumed run equals an
    uninterrupted one bit for bit. A step
    whose meta-gradient or updated theta is not finite is skipped (``skipped`` in its metrics).
    On Ctrl-C or SIGTERM the step in flight finishes, the checkpoint is written and
    ``Interrupted`` is raised; a second one abandons the step (``Abandoned``).
    """
    check_rule(rule)
    if not isinstance(family, (TaskFamily, Mixture)):
        raise TypeError("family must be a TaskFamily or a Mixture (lopt.tasks.make_family(NAME)); "
                        f"got {type(family).__name__}")
    if not (hasattr(estimator, "build") or isinstance(estimator, Estimator)):
        raise TypeError("estimator must be an estimator config such as lopt.outer.PES(...) or "
                        f"TBPTT(...), or a built Estimator; got {type(estimator).__name__}")
    run, files = _option_groups(run, files, options)
    placement = Placement(resolve_devices(devices), runs_per_split(estimator, family),
                          model=model_parallel)
    est = _build(estimator, rule, family, placement)
    meta_optimizer = run.meta_optimizer or default_meta_optimizer()
    state = _initial_state(rule, est, run, meta_optimizer, placement)
    store = open_checkpoints(files.checkpoint_path, files.keep_checkpoints) \
        if files.checkpoint_path else None
    state = _resume(store, files, rule, run.num_steps, state)
    step_fn = placement.compile(make_outer_step(est, meta_optimizer), state)
    # The step donates its input: leaves that share one buffer (equal constants an init
    # returned twice) must become distinct arrays first, as placing them on the mesh does.
    state = placement.to_devices(state)
    saver = _Saver(store, placement, rule, files.run_config)
    start = int(placement.first(state.step))
    state, history = _loop(step_fn, state, start, run, files, saver)
    if store is not None and run.num_steps > start:
        saver.save(state)
    host = placement.to_host(state)
    return TrainResult(theta=host.theta, history=list(history), state=host,
                       steps_run=max(0, run.num_steps - start))


def _option_groups(run, files, options) -> tuple:
    """RunOptions and RunFiles from the groups given and the keywords of their fields."""
    names = {cls: {f.name for f in dataclasses.fields(cls)} for cls in (RunOptions, RunFiles)}
    unknown = sorted(set(options) - names[RunOptions] - names[RunFiles])
    if unknown:
        raise TypeError(f"train() got unexpected keyword arguments {unknown}")
    groups = []
    for cls, given in ((RunOptions, run), (RunFiles, files)):
        mine = {k: v for k, v in options.items() if k in names[cls]}
        if given is not None and mine:
            raise TypeError(f"give {sorted(mine)} in the {cls.__name__} or as keywords, not both")
        groups.append(given if given is not None else cls(**mine))
    return tuple(groups)


def _build(estimator, rule, family, placement) -> Estimator:
    if hasattr(estimator, "build"):
        return build_estimator(estimator, rule, family, axis_name=placement.AXIS)
    if placement.sharded:
        raise ValueError("devices needs an estimator config (with build), not a built Estimator")
    return estimator


def initial_theta(rule, seed: int = 0, theta=None):
    """The theta ``train`` starts from with ``seed`` (``RunOptions.seed``) and warm start
    ``theta`` (``RunOptions.theta``): ``theta`` when given, else the rule's draw from the first
    split of the seed's key. Benchmarks rebuild a recipe's start with it."""
    if theta is not None:
        return theta
    return rule.init_meta(jax.random.split(jax.random.PRNGKey(seed), 3)[0])


def _initial_state(rule, est, run: RunOptions, meta_optimizer, placement) -> TrainState:
    _, k_est, k_train = jax.random.split(jax.random.PRNGKey(run.seed), 3)
    theta = initial_theta(rule, run.seed, run.theta)
    return TrainState(theta, meta_optimizer.init(theta),
                      placement.local_runs(est.init(k_est, theta)), k_train,
                      jnp.zeros((), jnp.int32))


def _resume(store, files: RunFiles, rule, num_steps: int, state: TrainState) -> TrainState:
    """The latest checkpoint's state when resuming (after checking it is this run's), else
    ``state``; stale temporaries of interrupted writes are removed either way."""
    if store is None:
        return state
    if files.resume and store.latest_step() is not None:
        def check(meta):
            check_resume(store.folder, meta, rule_name=rule.name, rule_config=rule.config,
                         run_config=files.run_config, num_steps=num_steps)

        if hasattr(store, "latest_intact"):
            step, _, state, skipped = store.latest_intact(state, check)
            for bad, reason in skipped:  # said, never silent: the run redoes those steps
                aside = store.set_aside(bad)
                print(f"lopt: checkpoint {bad} is not usable ({reason}); moved to {aside}; "
                      f"resuming from checkpoint {step}", file=sys.stderr)
        else:  # lopt <= 0.1's one-file checkpoint
            check(store.metadata())
            state = store.restore(state)
    remove_stale_temporaries(store.folder)
    return state


class _Saver:
    """Writes a device-placed TrainState as one checkpoint with the run's metadata."""

    def __init__(self, store, placement, rule, run_config):
        self.store, self.placement, self.rule, self.run_config = store, placement, rule, run_config

    @property
    def folder(self):
        return self.store.folder if self.store is not None else None

    def save(self, state) -> None:
        host = self.placement.to_host(state)
        self.store.save(host, {"rule": self.rule.name, "config": self.rule.config,
                               "step": int(host.step), "run": self.run_config})


def _write(writers, record: dict, seconds: float) -> None:
    timed = {k: v for k, v in record.items() if k != "step"}
    timed["seconds_per_step"] = seconds
    if "inner_steps" in record:
        timed["inner_steps_per_s"] = record["inner_steps"] / max(seconds, 1e-9)
    for writer in writers:
        writer.write(record["step"], timed)


def _loop(step_fn, state, start: int, run: RunOptions, files: RunFiles, saver: _Saver):
    """Outer steps ``start`` … ``run.num_steps - 1``: metrics logged and shown, checkpoints on
    schedule, a Ctrl-C honoured after the step in flight."""
    lead = jax.process_index() == 0
    log_path = files.log_path if lead else None
    if log_path:
        os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
        trim_log(log_path, start)
    history = collections.deque(maxlen=HISTORY_LIMIT)
    with contextlib.ExitStack() as stack:
        bar = stack.enter_context(tqdm(total=run.num_steps, initial=start, desc="meta-train",
                                       unit="step", disable=not (run.progress and lead)))
        log_file = open(log_path, "a") if log_path else None
        if log_file:
            stack.callback(log_file.close)
        writers = open_writers(files.logdir, start, files.writers) if lead else []
        for writer in writers:
            stack.callback(writer.close)
        stop = stack.enter_context(_StopOnSignal())
        for step in range(start, run.num_steps):
            began = time.perf_counter()
            state, metrics = step_fn(state)
            metrics = jax.device_get(saver.placement.first(metrics))
            seconds = time.perf_counter() - began
            record = {"step": step, **{k: float(v) for k, v in metrics.items()}}
            if run.validate is not None and lead and (
                    (step + 1) % run.validate_every == 0 or step + 1 == run.num_steps):
                theta = saver.placement.to_host(state).theta
                record.update({f"valid/{k}": float(v) for k, v in run.validate(theta).items()})
            history.append(record)
            if log_file:
                log_file.write(log_line(record))
                log_file.flush()
            if writers:
                # Wall times go to the writers only: the log of a resumed run equals an
                # uninterrupted one's.
                _write(writers, record, seconds)
            bar.update(1)
            bar.set_postfix(meta_loss=f"{record['meta_loss']:.4g}", refresh=False)
            if stop.requested is not None:
                if saver.store is not None:
                    saver.save(state)
                raise Interrupted(step + 1, saver.folder, stop.requested)
            if saver.store is not None and (step + 1) % files.checkpoint_every == 0:
                saver.save(state)
    return state, history
