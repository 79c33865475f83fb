"""``lopt bench perf``: per-update cost of every rule, meta-training throughput per estimator,
TBPTT memory against truncation, and optimizer-state bytes per parameter.

Timings that are compared are taken in one stage of one run: today's code and the baseline
commit (the last one before the speed work, unpacked with ``git archive``) alternate in
subprocesses running ``probe.py``, and every ratio is formed within one process (a rule's
time over optax.adam's; its FLOP floor from the matmul rate measured in that process).
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile

import jax

from lopt.bench.perf import report
from lopt.bench.perf.costs import adam_training_step, flops_per_coordinate, tbptt_memory
from lopt.bench.perf.probe import big_pytree
from lopt.bench.suite import Suite
from lopt.evaluation.metrics import state_bytes_per_parameter
from lopt.rules import RULES, make_rule

BASELINE_COMMIT = "1d71538"  # main before the performance work
LEARNED = ("per_parameter_mlp", "hierarchical", "l2l_lstm", "rnnprop", "hyperadam",
           "multiscale_adam", "normalized_history", "adafac_mlp", "celo")
HAND = ("sgd", "momentum", "adam", "adamw", "lion", "muon")


@dataclasses.dataclass(frozen=True)
class Size:
    width: int = 1024            # the pytree: two width × width matrices and a bias
    repeats: int = 9
    truncations: tuple = (10, 25, 50, 100)
    memory_tasks: int = 8
    throughput_repeats: int = 7
    baseline: bool = True


FULL, QUICK = Size(), Size(width=256, repeats=3, truncations=(5, 20), memory_tasks=2,
                           throughput_repeats=3, baseline=False)
SIZES = {"full": FULL, "quick": QUICK}


def throughput_configs(size: Size) -> list:
    """The measured meta-training configurations: 16 instances, truncation 50, the per-parameter
    MLP; PES (antithetic) on a 16→32→4 MLP and on 10-d sums of squares, and every estimator
    beside a plain unroll of the same runs; and the L2L LSTM on quadratics (32 instances,
    truncation 20) for TBPTT and the reparameterization gradient."""
    base = {"kind": "throughput", "rule": "per_parameter_mlp", "num_tasks": 16,
            "truncation": 50, "horizon": 1000, "repeats": size.throughput_repeats}
    jobs = [dict(base, family="sum_of_squares", estimator="pes")]
    for est in ("unroll", "pes", "es", "unroll:reparam", "tbptt", "reparam"):
        jobs.append(dict(base, family="teacher_mlp", estimator=est))
    # lopt bench estimators' setting, where the 0.41-0.46 overheads were first measured.
    l2l = dict(base, rule="l2l_lstm", family="quadratic", num_tasks=32, truncation=20,
               horizon=100)
    for est in ("unroll", "tbptt", "unroll:reparam", "reparam"):
        jobs.append(dict(l2l, estimator=est))
    return jobs


def update_jobs(size: Size) -> list:
    """The matmul rate, then every rule and optax.adam taking turns (``probe.update_times``)."""
    return [{"kind": "matmul"},
            {"kind": "updates", "rules": ["optax.adam", *LEARNED, *HAND], "width": size.width,
             "repeats": size.repeats}]


def run_probe(jobs: list, pythonpath: str = "") -> list:
    """probe.py's results for ``jobs``, in a fresh process importing lopt from ``pythonpath``
    (this checkout when empty)."""
    return run_probes_together(jobs, [None], pythonpath)[0]


def run_probes_together(jobs: list, cpus: list, pythonpath: str = "") -> list:
    """probe.py's results for ``jobs`` from len(cpus) fresh processes started at once, each
    pinned to its cpu (None: every core), importing lopt from ``pythonpath``."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "probe.py")
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(jobs, f)
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    pin = lambda cpu: None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu}))
    try:
        procs = [subprocess.Popen([sys.executable, script, f.name], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=env,
                                  cwd=tempfile.gettempdir(), preexec_fn=pin(cpu))
                 for cpu in cpus]
        outs = [p.communicate() for p in procs]
    finally:
        os.unlink(f.name)
    for p, (_, err) in zip(procs, outs):
        if p.returncode:
            raise RuntimeError(f"probe.py failed: {err[-2000:]}")
    return [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]


def baseline_tree(commit: str):
    """A temporary folder holding the ``lopt`` package at ``commit``, or None outside git."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))
    folder = tempfile.mkdtemp(prefix="lopt_baseline_")
    try:
        archive = subprocess.run(["git", "-C", root, "archive", commit, "lopt"],
                                 capture_output=True, check=True).stdout
        subprocess.run(["tar", "x", "-C", folder], input=archive, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return folder


def _both(jobs: list, size: Size) -> dict:
    """Today's code, then the baseline's, then today's again: the median-of-two for today
    smooths a load change in between."""
    out = {"head": run_probe(jobs)}
    base = baseline_tree(BASELINE_COMMIT) if size.baseline else None
    if base is not None:
        out["baseline"] = run_probe(jobs, base)
        out["head_again"] = run_probe(jobs)
    return out


def _memory(size: Size) -> list:
    rows = []
    for k in size.truncations:
        for remat in ("none", "step", "nested", "auto"):
            rows.append(tbptt_memory("l2l_lstm", "digits_mlp", size.memory_tasks, k, remat))
    return rows


def _state_bytes(size: Size) -> dict:

    params = jax.eval_shape(lambda: big_pytree(size.width))
    return {name: state_bytes_per_parameter(make_rule(name), None, params)
            for name in sorted(RULES)}


def _flops(size: Size) -> dict:

    return {name: flops_per_coordinate(make_rule(name).init_meta(jax.random.PRNGKey(0)))
            for name in LEARNED + HAND}


def run(out: str, quick: bool = False, command: str = "lopt bench perf",
        progress: bool = True) -> str:
    size = SIZES["quick" if quick else "full"]
    suite = Suite("perf", out, size, command, 6, progress)
    updates = suite.cached("updates", lambda: _both(update_jobs(size), size))
    throughput = suite.cached("throughput", lambda: _both(throughput_configs(size), size))
    memory = suite.cached("memory", lambda: _memory(size))
    adam_step = suite.cached("adam_step", lambda: adam_training_step(size.width, size.repeats))
    state = suite.cached("state_bytes", lambda: _state_bytes(size))
    flops = suite.cached("flops", lambda: _flops(size))
    num_params = 2 * size.width**2 + size.width
    suite.payload.update(updates=updates, throughput=throughput, memory=memory,
                         adam_step=adam_step, state_bytes=state, flops=flops,
                         num_params=num_params)
    report.sections(suite, updates, throughput, memory, adam_step, state, flops, num_params)
    return suite.finish("Performance: learned updates, meta-training, memory", report.intro(size))
