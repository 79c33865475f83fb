"""``lopt bench soak``: a long ``lopt train`` at tiny size with its resident memory sampled,
to show that meta-training runs in flat memory (the log streams to disk; ``train()`` keeps a
bounded history; checkpoints are rotated).

The job runs as a child process (the real CLI, checkpointing every 1,000 steps); every
``interval`` seconds its RSS (``/proc/PID/status``) and the steps logged so far are recorded.
Growth is measured after a warm-up (the first 10% of steps: compiles, first checkpoints,
``train()``'s bounded history filling up to its 10,000 records). A second run without
checkpoints separates what the checkpoint saves hold from what the loop itself holds."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from lopt.bench.suite import Suite


@dataclasses.dataclass(frozen=True)
class Size:
    steps: int
    interval: float


FULL = Size(steps=100_000, interval=5.0)
QUICK = Size(steps=3_000, interval=1.0)
SIZES = {"full": FULL, "quick": QUICK}
WARM_UP = 0.1
FLAT = 0.02  # the bound: RSS after warm-up within 2% of its value at the end of warm-up
CHECKPOINT_EVERY = 1000


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def command(out: str, steps: int, checkpoint_every: int = CHECKPOINT_EVERY) -> list:
    return [sys.executable, "-m", "lopt", "train", "--task", "quadratic", "--steps", str(steps),
            "--num-tasks", "4", "--truncation", "3", "--horizon", "8", "--rule-config",
            '{"hidden": 4, "layers": 1}', "--checkpoint-every", str(checkpoint_every),
            "--eval-tasks", "4", "--eval-steps", "20", "--baselines", "adam", "--no-progress",
            "--out", out]


def soak(size: Size, checkpoint_every: int = CHECKPOINT_EVERY) -> dict:
    """Run the job to its end, sampling (seconds, steps logged, RSS MiB)."""
    with tempfile.TemporaryDirectory(prefix="lopt-soak-") as out:
        log = os.path.join(out, "train_log.jsonl")
        proc = subprocess.Popen(command(out, size.steps, checkpoint_every),
                                stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        samples, lines, offset, start = [], 0, 0, time.time()
        while proc.poll() is None:
            time.sleep(size.interval)
            if os.path.exists(log):
                with open(log, "rb") as f:
                    f.seek(offset)
                    chunk = f.read()
                offset += len(chunk)
                lines += chunk.count(b"\n")
            try:
                samples.append((time.time() - start, lines, _rss_mib(proc.pid)))
            except (FileNotFoundError, RuntimeError):
                break  # it has just exited
        err = proc.communicate()[1]
        if proc.returncode != 0:
            raise RuntimeError(f"the soak job failed (exit {proc.returncode}): {err[-500:]}")
    return {"samples": samples, "seconds": time.time() - start}


def growth(samples: list, steps: int) -> dict:
    """RSS at the end of warm-up, its maximum over the training steps after it, and the
    relative growth (training samples only: the comparison after training is not the loop)."""
    train = [(t, n, r) for t, n, r in samples if WARM_UP * steps <= n < steps]
    if len(train) < 2:
        raise RuntimeError("too few samples after warm-up; lower the interval")
    base = train[0][2]
    peak = max(r for _, _, r in train)
    last = train[-1][2]
    return {"warm_rss_mib": base, "max_rss_mib": peak, "last_rss_mib": last,
            "growth": (peak - base) / base, "flat": (peak - base) / base <= FLAT,
            "kib_per_step": 1024 * (last - base) / max(1, train[-1][1] - train[0][1])}


def run(out: str, quick: bool = False, command: str = "lopt bench soak",
        progress: bool = True) -> str:
    size = SIZES["quick" if quick else "full"]
    suite = Suite("soak", out, size, command, 2, progress)
    runs = {"checkpoint every 1,000 steps": suite.cached("soak", lambda: soak(size)),
            "no checkpoints": suite.cached("soak_no_checkpoints",
                                           lambda: soak(size, size.steps + 1))}
    growths = {name: growth(r["samples"], size.steps) for name, r in runs.items()}
    suite.payload.update(result=runs["checkpoint every 1,000 steps"],
                         growth=growths["checkpoint every 1,000 steps"],
                         runs=runs, growths=growths)
    lines = [f"`lopt train` on the 3-d quadratic (l2l_lstm 4×1, TBPTT 4 runs, truncation 3), "
             f"{size.steps:,} outer steps, RSS sampled every {size.interval:g} s; "
             + ", ".join(f"{name}: {r['seconds']:.0f} s" for name, r in runs.items()) + ".", "",
             "| run | RSS after warm-up (MiB) | max after (MiB) | at the last step (MiB) | "
             f"growth | KiB per step | flat within {FLAT:.0%} |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {name} | {g['warm_rss_mib']:.0f} | {g['max_rss_mib']:.0f} | "
              f"{g['last_rss_mib']:.0f} | {100 * g['growth']:.2f}% | {g['kib_per_step']:.4f} | "
              f"{'yes' if g['flat'] else 'no'} |" for name, g in growths.items()]
    with_c, without = growths["checkpoint every 1,000 steps"], growths["no checkpoints"]
    saves = max(1, int((1 - WARM_UP) * size.steps) // CHECKPOINT_EVERY)
    lines += ["", "What grows: before the warm-up ends, `train()`'s history (its last 10,000 "
              "records, by design) and the allocator's first pools; after it, the loop without "
              f"checkpoints grows {without['kib_per_step']:.4f} KiB a step, and the "
              f"checkpoint saves add about "
              f"{1024 * (_grown(with_c) - _grown(without)) / saves:.0f} "
              f"KiB each ({saves} saves after warm-up; orbax and tensorstore's own state)."]
    suite.section("Resident memory over the run", "\n".join(lines))
    _plot(runs, size.steps, suite.figure("rss.png"))
    return suite.finish("Soak: meta-training memory over a long run",
                        f"Warm-up is the first {WARM_UP:.0%} of the steps.")


def _grown(run: dict) -> float:
    """MiB a run's resident memory grew after its warm-up."""
    return run["last_rss_mib"] - run["warm_rss_mib"]


def _plot(runs: dict, steps: int, path: str) -> None:
    # Without pyplot, as lopt.evaluation.plots draws: the caller's backend stays as it was.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.5), dpi=120)
    ax = fig.subplots()
    for name, r in runs.items():
        s = np.asarray(r["samples"])
        ax.plot(s[:, 1], s[:, 2], label=name)
    ax.axvline(WARM_UP * steps, color="grey", ls=":", label="end of warm-up")
    ax.set(xlabel="outer steps logged", ylabel="RSS (MiB)", title="lopt train, resident memory")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
