"""``lopt bench throughput``: meta-training inner steps per second of the whole outer step on
the two small configurations of issue 25 — PES with ``per_parameter_mlp``, 16 antithetic
pairs, truncation 50, horizons 100–1,000 staggered, σ 0.01, adam(3e-4) — on a 10-d sum of
squares and a 16→32→4 MLP, measured in turns against an earlier commit.

This machine's run-to-run noise (±30–40% between processes) is larger than the differences
measured, so the two checkouts alternate in fresh processes for ``rounds`` rounds and each
side is reported as its median and range over the rounds; the ratio is the median of the
per-round ratios (each formed from two neighbouring processes).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from lopt.bench.perf.overview import baseline_tree, run_probe
from lopt.bench.suite import Suite

BASELINE_COMMIT = "c55e3f5"  # main when issue 25's throughput numbers were taken


@dataclasses.dataclass(frozen=True)
class Size:
    rounds: int = 10
    repeats: int = 30
    baseline: str = BASELINE_COMMIT


FULL, QUICK = Size(), Size(rounds=2, repeats=5)
SIZES = {"full": FULL, "quick": QUICK}


def jobs(size: Size) -> list:
    base = {"kind": "outer", "rule": "per_parameter_mlp", "num_tasks": 16, "truncation": 50,
            "horizon": 100, "max_horizon": 1000, "repeats": size.repeats}
    return [dict(base, family="sum_of_squares"), dict(base, family="teacher_mlp")]


def alternate(job_list: list, rounds: int, commit: str, suite: str) -> dict:
    """{"head": [[job results] per round], "baseline": [...]}: ``job_list`` measured in fresh
    processes, this checkout and ``commit``'s lopt in turns, head first in even rounds, the
    baseline first in odd ones."""
    tree = baseline_tree(commit)
    if tree is None:  # not a git checkout, or the commit is unknown: nothing to compare with
        raise RuntimeError(f"lopt bench {suite} needs the git history holding commit {commit}")
    out = {"head": [], "baseline": []}
    for r in range(rounds):
        order = ("head", "baseline") if r % 2 == 0 else ("baseline", "head")
        for side in order:
            out[side].append(run_probe(job_list, tree if side == "baseline" else ""))
    return out


def in_turns(size: Size) -> dict:
    """The throughput jobs in turns against ``size.baseline`` (``alternate``)."""
    return alternate(jobs(size), size.rounds, size.baseline, "throughput")


def summary(turns: dict) -> list:
    rows = []
    for i, job in enumerate(turns["head"][0]):
        head = np.array([r[i]["inner_steps_per_s"] for r in turns["head"]])
        base = np.array([r[i]["inner_steps_per_s"] for r in turns["baseline"]])
        rows.append({"family": job["family"], "head_median": float(np.median(head)),
                     "head_range": [float(head.min()), float(head.max())],
                     "baseline_median": float(np.median(base)),
                     "baseline_range": [float(base.min()), float(base.max())],
                     "ratio_median": float(np.median(head / base))})
    return rows


def _plot(turns: dict, size: Size, path: str) -> None:
    # Without pyplot, as lopt.evaluation.plots draws: the caller's backend stays as it was.
    from matplotlib.figure import Figure

    families = [j["family"] for j in turns["head"][0]]
    fig = Figure(figsize=(4 * len(families), 3), dpi=120)
    axes = fig.subplots(1, len(families))
    for i, (ax, family) in enumerate(zip(np.atleast_1d(axes), families)):
        for side, label in (("head", "this commit"), ("baseline", size.baseline)):
            ax.plot([r[i]["inner_steps_per_s"] for r in turns[side]], "o-", label=label)
        ax.set(title=family, xlabel="round", ylabel="inner steps / s")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


def run(out: str, quick: bool = False, command: str = "lopt bench throughput",
        progress: bool = True) -> str:
    size = SIZES["quick" if quick else "full"]
    suite = Suite("throughput", out, size, command, 1, progress)
    turns = suite.cached("turns", lambda: in_turns(size))
    rows = summary(turns)
    suite.payload.update(turns=turns, summary=rows)
    lines = ["| task | this commit: median [range] | "
             f"{size.baseline}: median [range] | ratio (median of rounds) |",
             "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['family']} | {r['head_median']:,.0f} [{r['head_range'][0]:,.0f}–"
                     f"{r['head_range'][1]:,.0f}] | {r['baseline_median']:,.0f} "
                     f"[{r['baseline_range'][0]:,.0f}–{r['baseline_range'][1]:,.0f}] | "
                     f"{r['ratio_median']:.2f}× |")
    suite.section(f"Inner steps per second, {size.rounds} rounds in turns", "\n".join(lines))
    _plot(turns, size, suite.figure("throughput_rounds.png"))
    return suite.finish("Meta-training throughput on tiny tasks, in turns",
                        "The whole outer step as `lopt.outer.train` compiles it (one device), "
                        f"median of {size.repeats} calls per process.")
