"""``lopt train``: meta-train a learned rule (resumably, on one device, many, or many
processes), save it, then compare it with tuned baselines."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sys
import threading
import time

import jax
import numpy as np

from lopt.cli import coordination_host, preflight
from lopt.cli.compare import run_comparison
from lopt.cli.config import TrainConfig
from lopt.cli.invocation import Invocation
from lopt.cli.liveness import PeerWatch, exit_on_silence
from lopt.cli.phases import phase
from lopt.cli.value_checks import ConfigError
from lopt.evaluation import meta_validation, normalize_all, plots
from lopt.files.atomic import write_json
from lopt.files.rule_file import save
from lopt.files.run_folder import FolderLock, checkpoint_path, remove_stale_temporaries
from lopt.optax_adapter.transformation import load_named
from lopt.outer import RunFiles, RunOptions, default_meta_optimizer, initial_theta, train
from lopt.outer.mup_rule import mup_rule_for
from lopt.rules import make_rule
from lopt.rules.base import theta_mismatch
from lopt.tasks import make_family

EXIT_FAILED = 1
HEARTBEAT_SECONDS = 30  # a dead peer outside a collective: noticed in 30 s, not jax's 100
_SERVICE_HOSTS: list = []  # process 0's coordination service host, kept for the process's life


def _warm_start(rule, source: str):
    """The theta of ``source`` (a shipped name or a .lopt path) for ``rule``, or None: refused
    in one line when its arrays do not fit ``rule``'s architecture (the rule's name may differ,
    e.g. celo2 -> celo2_base, whose meta-parameters are the same network)."""
    if not source:
        return None
    try:
        stored, theta = load_named(source)
    except ValueError as err:
        raise ConfigError(f"init_from: {err}") from None
    problem = theta_mismatch(rule, theta)
    if problem:
        raise ConfigError(f"init_from: {source!r} holds a {stored.name} theta that does not fit "
                          f"rule {rule.name} as configured: {problem}")
    return theta


class StoppedAfterSaving(KeyboardInterrupt):
    """A signal during the comparison, after meta-training finished and its rule was saved."""

    def __init__(self, signum: int, saved: str):
        super().__init__(signal.Signals(signum).name)
        self.signum, self.saved = signum, saved


class RunFailed(RuntimeError):
    """The run went through but produced nothing usable; the message says why."""


def cmd_train(cfg: TrainConfig, invocation: Invocation) -> int:
    out_dir = cfg.out_dir
    watch = None
    if cfg.distribution.distributed:
        devices, watch = _start_distributed(cfg)
    else:
        devices = cfg.distribution.devices
    try:
        rule = make_rule(cfg.learned.rule, **cfg.learned.rule_kwargs())
    except (ValueError, TypeError) as err:
        raise ConfigError(f"rule_config: {err}") from None
    family = make_family(cfg.task)
    if cfg.learned.mup:
        rule = mup_rule_for(rule, family)
    if cfg.run.normalize:
        family = normalize_all(family, num_steps=cfg.outer.horizon)
    estimator = cfg.outer.build()
    # Everything that can refuse the run does so before the first byte is written.
    preflight.check_out_folder(out_dir)
    if cfg.run.logdir:
        preflight.check_out_folder(cfg.run.logdir, "logdir")
    preflight.check_memory(rule, family, estimator)
    # The phases after meta-training are sized now too: a comparison that cannot fit must not
    # abort (in C++) after hours of meta-training.
    preflight.check_comparison_memory(rule, family, cfg.evaluation)
    if cfg.run.validate_every:
        preflight.check_runs_memory(rule, family, cfg.run.validate_tasks,
                                    cfg.run.validate_steps, "validate_tasks x validate_steps")
    if not cfg.distribution.distributed:  # a job's devices are known once it has started
        preflight.check_devices(devices, estimator, family, cfg.distribution.model_parallel)
    validate = meta_validation(rule, family, num_tasks=cfg.run.validate_tasks,
                               num_steps=cfg.run.validate_steps) if cfg.run.validate_every else None
    run = RunOptions(num_steps=cfg.run.steps, seed=cfg.run.seed, progress=cfg.run.progress,
                     theta=_warm_start(rule, cfg.run.init_from),
                     meta_optimizer=default_meta_optimizer(cfg.run.meta_lr,
                                                           cfg.run.clip_grad_norm),
                     validate=validate, validate_every=cfg.run.validate_every or 1)
    checkpoint = checkpoint_path(out_dir)
    lead = not cfg.distribution.distributed or jax.process_index() == 0
    preflight.make_out_folder(out_dir)
    with contextlib.ExitStack() as stack:
        stack.enter_context(phase("meta-training"))
        if lead:
            # Nothing reads or writes the run folder's files before holding it.
            stack.enter_context(FolderLock(out_dir))
        if not cfg.distribution.distributed:  # orbax reads checkpoints collectively: a
            preflight.check_checkpoint(cfg, rule, checkpoint)  # distributed job checks in train
        if lead:
            # A kill during a final save left its temporary (.tmp-*.lopt) here.
            remove_stale_temporaries(out_dir)
            write_json(os.path.join(out_dir, "config.json"), cfg.flat())
        files = RunFiles(log_path=os.path.join(out_dir, "train_log.jsonl"),
                         checkpoint_path=checkpoint, checkpoint_every=cfg.run.checkpoint_every,
                         resume=cfg.run.resume, run_config=preflight.run_config(cfg),
                         logdir=cfg.run.logdir or None,
                         writers=_wandb(cfg, out_dir) if cfg.run.wandb and lead else ())
        start = time.time()
        try:
            result = train(rule, family, estimator, run, files, devices=devices,
                           model_parallel=cfg.distribution.model_parallel)
        except Exception as err:
            if not (cfg.distribution.distributed and _peer_failure(err)):
                raise
            _peer_lost(err, checkpoint)
        finally:
            if watch is not None:
                watch.finish()
    if not lead:
        return 0  # process 0 saves and reports
    with phase("saving the rule"):
        _save_and_report(cfg, rule, family, result, files, time.time() - start,
                         initial_theta(rule, run.seed, run.theta))
    rule_path = os.path.join(out_dir, f"{cfg.learned.rule}.lopt")
    try:
        with phase("the comparison"):
            run_comparison(rule, result.theta, cfg.evaluation, out_dir,
                           f"{cfg.learned.rule} (learned)", invocation,
                           normalize=cfg.run.normalize)
    except KeyboardInterrupt as err:
        raise StoppedAfterSaving(getattr(err, "signum", signal.SIGINT), rule_path) from None
    print(f"results in {out_dir}/: comparison*.md, comparison*.json, comparison*.png, "
          f"train_curve.png")
    return 0


def _wandb(cfg: TrainConfig, out_dir: str) -> tuple:
    """A Weights & Biases run named after the run folder, resumed with it."""
    from lopt.files.metric_writers import WandbWriter

    name = os.path.basename(os.path.abspath(out_dir))
    return (WandbWriter(project="lopt", name=name, id=name, resume="allow", dir=out_dir,
                        config=cfg.flat()),)


def _start_distributed(cfg: TrainConfig) -> tuple:
    """Join the ``jax.distributed`` job; returns the local device count and the watch on the
    other processes (``lopt.cli.liveness``: a stopped peer ends the job in one line)."""
    # CPU processes need a collectives backend; accelerators bring their own.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    d = cfg.distribution
    # A peer that never starts makes jax abort in C++ (a stack trace, no Python error) when its
    # initialization times out: a watchdog ends the process first, in one line.
    joined = threading.Event()
    threading.Thread(target=_join_watchdog, args=(joined, d), daemon=True).start()
    with _service_elsewhere(d):
        jax.distributed.initialize(coordinator_address=d.coordinator,
                                   num_processes=d.num_processes, process_id=d.process_id,
                                   heartbeat_timeout_seconds=HEARTBEAT_SECONDS,
                                   initialization_timeout=d.join_timeout + 60)
    joined.set()
    watch = PeerWatch(jax.process_index(), jax.process_count(),
                      exit_on_silence(jax.process_index(), cfg.out_dir, EXIT_FAILED)).start()
    return jax.local_device_count(), watch


@contextlib.contextmanager
def _service_elsewhere(d):
    """Process 0 starts the job's coordination service in a process of its own
    (``lopt.cli.coordination_host``: its death then cannot abort the others in C++), and
    ``jax.distributed.initialize`` inside this block makes only the client. jax offers no
    option for an external service, so its call of jaxlib's service factory is answered
    with None (what jax stores on processes other than 0)."""
    if d.process_id != 0:
        yield
        return
    from jax._src import distributed

    port = d.coordinator.rsplit(":", 1)[1]
    bind = os.environ.get("JAX_COORDINATOR_BIND_ADDRESS", f"[::]:{port}")
    host = coordination_host.start(bind, d.num_processes, HEARTBEAT_SECONDS)
    if host is None:
        raise ConfigError(f"--coordinator {d.coordinator}: process 0 could not serve the job "
                          f"on {bind} (is the port in use?); choose a free port")
    _SERVICE_HOSTS.append(host)
    real = distributed._jax

    class _NoService:
        def __getattr__(self, name):
            return getattr(real, name)

        @staticmethod
        def get_distributed_runtime_service(*args, **kwargs):
            return None

    distributed._jax = _NoService()
    try:
        yield
    finally:
        distributed._jax = real


def _join_watchdog(joined: threading.Event, d) -> None:
    if joined.wait(d.join_timeout):
        return
    who = (f"the other {d.num_processes - 1} process(es) did not all join"
           if d.process_id == 0 else f"the coordinator (process 0) at {d.coordinator} did not "
           "answer") if d.process_id is not None else "the job's processes did not all join"
    sys.stderr.write(f"lopt train: failed: process {d.process_id} waited {d.join_timeout} s "
                     f"for the job ({who}); start every process, then run the same command "
                     "again (--join-timeout sets the wait)\n")
    sys.stderr.flush()
    os._exit(EXIT_FAILED)


def _save_and_report(cfg: TrainConfig, rule, family, result, files: RunFiles, seconds,
                     start_theta) -> None:
    """The rule file and the meta-training curve; a run whose every step was skipped fails —
    judged by theta itself (still bit-equal to where the run started), so running the same
    command again fails again whatever became of the log."""
    history = []
    if os.path.exists(files.log_path):
        with open(files.log_path) as f:
            history = [_nan_for_null(json.loads(line)) for line in f if line.strip()]
    unchanged = all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in
                    zip(jax.tree.leaves(result.theta), jax.tree.leaves(start_theta)))
    if unchanged:
        raise RunFailed(f"theta is still its initial value after {cfg.run.steps} outer steps: "
                        "every step was skipped (non-finite meta-gradient or theta) or had a "
                        "zero meta-gradient; lower --meta-lr or --sigma, or set --loss-clip "
                        f"(checkpoint {files.checkpoint_path})")
    out_dir = cfg.out_dir
    rule_path = os.path.join(out_dir, f"{cfg.learned.rule}.lopt")
    save(rule_path, rule, result.theta,
         extra={"task": cfg.task, "train": cfg.flat(),
                "eval": dataclasses.asdict(cfg.evaluation)})
    if history:
        plots.plot_history(history, os.path.join(out_dir, "train_curve.png"),
                           f"meta-training {cfg.learned.rule} on {family.name}")
    skipped = sum(int(h.get("skipped", 0)) for h in history)
    print(f"meta-trained {cfg.learned.rule} on {family.name}: {cfg.run.steps} outer steps "
          f"({result.steps_run} this run, {seconds:.0f} s), {skipped} skipped; saved "
          f"{rule_path}")


def _peer_failure(err) -> bool:
    """Whether ``err`` is a collective that failed because a peer process went away (gloo
    raises it as a JaxRuntimeError from a step and as a ValueError from a host all-gather)."""
    text = str(err)
    return isinstance(err, jax.errors.JaxRuntimeError) or any(
        s in text for s in ("Gloo", "Connection reset", "Connection closed", "heartbeat"))


def _peer_lost(err, checkpoint) -> None:
    """A collective failed because another process of the job died: say so in one line and
    leave at once — jax.distributed's shutdown would wait for the dead peer, then abort with
    pages of coordination-service logs."""
    detail = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
    sys.stderr.write(f"lopt train: failed: another process of the distributed job stopped "
                     f"({detail}); restart every process with the same command to resume from "
                     f"the last checkpoint in {checkpoint}\n")
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(EXIT_FAILED)


def _nan_for_null(record: dict) -> dict:
    return {k: (float("nan") if v is None else v) for k, v in record.items()}
