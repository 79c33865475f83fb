"""``lopt bench cores``: what the machine's cores buy lopt — PES on the small tasks and one
update on the 2.1M-parameter pytree, in one process on every core and pinned to one, and in
two processes at once sharing every core or pinned one to a core each (as two meta-training
workers run). Each setting runs in fresh processes (``probe.py``), the settings in turns.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from lopt.bench.perf.overview import run_probes_together
from lopt.bench.suite import Suite
from lopt.bench.workers import cores
from lopt.files.errors import UsageError

SETTINGS = ("one process, every core", "one process, one core",
            "two processes at once, every core", "two processes at once, one core each")


@dataclasses.dataclass(frozen=True)
class Size:
    rounds: int = 3
    repeats: int = 30
    update_repeats: int = 9
    width: int = 1024


FULL, QUICK = Size(), Size(rounds=1, repeats=3, update_repeats=2, width=128)
SIZES = {"full": FULL, "quick": QUICK}


def jobs(size: Size) -> list:
    pes = {"kind": "throughput", "estimator": "pes", "num_tasks": 16, "truncation": 50,
           "horizon": 1000, "repeats": size.repeats}
    return [dict(pes, rule="per_parameter_mlp", family="teacher_mlp"),
            dict(pes, rule="adafac_mlp", family="teacher_mlp"),
            dict(pes, rule="per_parameter_mlp", family="sum_of_squares"),
            {"kind": "updates", "rules": ["optax.adam", "per_parameter_mlp"],
             "width": size.width, "repeats": size.update_repeats}]


def measure(size: Size) -> dict:
    """{setting: [probe results of every process of every round]}, settings in turns (the
    order rotated each round)."""
    available = sorted(os.sched_getaffinity(0))
    first, second = available[0], available[1]
    # Each setting's processes, by the cpu each is pinned to (None: every core).
    cpus = dict(zip(SETTINGS, ([None], [first], [None, None], [first, second])))
    out = {s: [] for s in SETTINGS}
    for r in range(size.rounds):
        for s in SETTINGS[r % 4:] + SETTINGS[:r % 4]:
            out[s] += run_probes_together(jobs(size), cpus[s])
    return out


def figure(result: dict) -> str:
    if result["kind"] == "update":
        return f"update {result['rule']}"
    return f"PES {result['rule']} {result['family']}"


def milliseconds(result: dict) -> float:
    return 1e3 * result.get("seconds_per_outer_step", result.get("seconds", np.nan))


def summary(measured: dict) -> dict:
    """{figure: {setting: [min, median, max] ms over that setting's processes}}."""
    out: dict = {}
    for setting, processes in measured.items():
        for process in processes:
            for r in process:
                out.setdefault(figure(r), {}).setdefault(setting, []).append(milliseconds(r))
    return {f: {s: [float(np.min(v)), float(np.median(v)), float(np.max(v))]
                for s, v in by.items()} for f, by in out.items()}


def _plot(rows: dict, path: str) -> None:
    # Without pyplot, as lopt.evaluation.plots draws: the caller's backend stays as it was.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.5), dpi=120)
    ax = fig.subplots()
    width = 0.8 / len(SETTINGS)
    for i, setting in enumerate(SETTINGS):
        # Each figure relative to one process on one core: below 1 is faster.
        heights = [by[setting][1] / by[SETTINGS[1]][1] for by in rows.values()]
        ax.bar(np.arange(len(rows)) + i * width, heights, width, label=setting)
    ax.axhline(1.0, color="black", lw=0.5)
    ax.set_xticks(np.arange(len(rows)) + 0.4 - width / 2, list(rows), fontsize=6, rotation=15)
    ax.set(ylabel="median time / one process on one core")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path)


def run(out: str, quick: bool = False, command: str = "lopt bench cores",
        progress: bool = True) -> str:
    if cores() < 2:
        raise UsageError(f"lopt bench cores compares one core with two: this process may use "
                         f"{cores()} core")
    size = SIZES["quick" if quick else "full"]
    suite = Suite("cores", out, size, command, 1, progress)
    measured = suite.cached("measured", lambda: measure(size))
    rows = summary(measured)
    suite.payload.update(measured=measured, summary=rows)
    head = "| figure | " + " | ".join(SETTINGS) + " |"
    lines = [head, "|---" * (len(SETTINGS) + 1) + "|"]
    for name, by in rows.items():
        cells = [f"{by[s][1]:.1f} [{by[s][0]:.1f}–{by[s][2]:.1f}]" for s in SETTINGS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    suite.section("Milliseconds per call: median [range] over processes", "\n".join(lines))
    _plot(rows, suite.figure("settings.png"))
    return suite.finish(
        "One core or two, one process or two",
        f"{size.rounds} rounds, the four settings in turns (fresh processes; two processes "
        f"started together); PES: 16 antithetic pairs, truncation 50, median of {size.repeats} "
        f"estimates; update: the {2 * size.width ** 2 + size.width:,}-parameter pytree, median "
        f"of {size.update_repeats} calls.")
