"""``lopt bench regression``: every timing ``lopt bench perf`` and ``lopt bench throughput``
commit to — each rule's update on the 2.1M-parameter pytree, each estimator's meta-training
throughput, the whole outer step on the two tiny tasks — measured in fresh processes in turns
against an earlier commit, so a speed change can be checked for slowing anything else down
(issue 39: "no regression > 5% at equal load, measured in turns against the starting commit").

Between processes this machine's speed moves by ±30%, more than the 5% looked for, so each
figure's verdict is the median over rounds of a ratio formed within one round (neighbouring
processes), and for updates also within one process: a rule's time over optax.adam's, which
no commit here changes, cancels what the process's speed adds to both.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from lopt.bench.perf import overview, throughput
from lopt.bench.suite import Suite

BASELINE_COMMIT = "b7293a7"  # main when issue 39's speed work started
TOLERANCE = 0.05  # slower by more than this is a regression


@dataclasses.dataclass(frozen=True)
class Size:
    rounds: int = 3
    width: int = 1024
    repeats: int = 7
    throughput_repeats: int = 5
    baseline: str = BASELINE_COMMIT


FULL = Size()
QUICK = Size(rounds=1, width=128, repeats=10, throughput_repeats=3)
SIZES = {"full": FULL, "quick": QUICK}


def jobs(size: Size) -> list:
    """perf's update and throughput jobs at ``size``, then throughput's outer steps."""
    perf_size = dataclasses.replace(overview.FULL, width=size.width, repeats=size.repeats,
                                    throughput_repeats=size.throughput_repeats)
    outer = throughput.jobs(dataclasses.replace(throughput.FULL,
                                                repeats=size.throughput_repeats))
    return overview.update_jobs(perf_size) + overview.throughput_configs(perf_size) + outer


def figure_name(result: dict) -> str:
    """A result's row label: what was timed and on what."""
    if result["kind"] == "update":
        return f"update {result['rule']}"
    if result["kind"] == "matmul":
        return "matmul 2048²"
    est = result.get("estimator", "outer step")
    return f"{est} {result['rule']} {result['family']}"


def speed(result: dict) -> float:
    """Higher is faster: updates per second, inner steps per second or GFLOP/s."""
    if result["kind"] == "update":
        return 1.0 / result["seconds"]
    if result["kind"] == "matmul":
        return result["gflops"]
    return result["inner_steps_per_s"]


def _by_name(process: list) -> dict:
    return {figure_name(r): r for r in process}


def summary(turns: dict, tolerance: float = TOLERANCE) -> list:
    """One row per figure both sides measured: each side's median speed, the median and range
    over rounds of head/baseline speed, and for updates the same of the ratio taken within
    each process relative to optax.adam; the verdict ("slower", "same", "faster") is read
    from the in-process ratio where there is one."""
    heads = [_by_name(p) for p in turns["head"]]
    bases = [_by_name(p) for p in turns["baseline"]]
    rows = []
    for name in heads[0]:
        if not all(name in b for b in bases):
            continue  # a rule the baseline commit does not have
        head = np.array([speed(h[name]) for h in heads])
        base = np.array([speed(b[name]) for b in bases])
        ratio = head / base
        row = {"figure": name, "head_median": float(np.median(head)),
               "baseline_median": float(np.median(base)),
               "ratio_median": float(np.median(ratio)),
               "ratio_range": [float(ratio.min()), float(ratio.max())]}
        judged = row["ratio_median"]
        adam = "update optax.adam"
        if name.startswith("update ") and name != adam:
            rel = (head / np.array([speed(h[adam]) for h in heads])) / \
                (base / np.array([speed(b[adam]) for b in bases]))
            row["relative_median"] = judged = float(np.median(rel))
            row["relative_range"] = [float(rel.min()), float(rel.max())]
        row["verdict"] = ("slower" if judged < 1 - tolerance else
                          "faster" if judged > 1 + tolerance else "same")
        rows.append(row)
    return rows


def _fmt_range(lo_hi) -> str:
    return f"{lo_hi[0]:.2f}–{lo_hi[1]:.2f}"


def table(rows: list, baseline: str) -> str:
    lines = [f"| figure | this commit | {baseline} | head / baseline: median [rounds] | "
             "× optax.adam, head / baseline: median [rounds] | verdict |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        rel = (f"{r['relative_median']:.2f}× [{_fmt_range(r['relative_range'])}]"
               if "relative_median" in r else "—")
        verdict = f"**{r['verdict']}**" if r["verdict"] == "slower" else r["verdict"]
        lines.append(f"| {r['figure']} | {r['head_median']:,.3g} | {r['baseline_median']:,.3g} "
                     f"| {r['ratio_median']:.2f}× [{_fmt_range(r['ratio_range'])}] | {rel} | "
                     f"{verdict} |")
    return "\n".join(lines)


def run(out: str, quick: bool = False, command: str = "lopt bench regression",
        progress: bool = True) -> str:
    size = SIZES["quick" if quick else "full"]
    suite = Suite("regression", out, size, command, 1, progress)
    turns = suite.cached("turns", lambda: throughput.alternate(jobs(size), size.rounds,
                                                               size.baseline, "regression"))
    rows = summary(turns)
    suite.payload.update(turns=turns, summary=rows)
    slower = [r["figure"] for r in rows if r["verdict"] == "slower"]
    suite.section(
        f"Speed against {size.baseline}, {size.rounds} rounds in turns",
        "Speeds: updates per second (update rows), inner steps per second (estimators and "
        "outer steps), GFLOP/s (matmul). A verdict is read from the in-process ratio to "
        f"optax.adam where there is one, else from the ratio over rounds; ±{TOLERANCE:.0%} "
        "counts as the same.\n\n" + table(rows, size.baseline) + "\n\n"
        + (f"Slower by more than {TOLERANCE:.0%}: {', '.join(slower)}." if slower else
           f"Nothing is slower by more than {TOLERANCE:.0%}."))
    return suite.finish(f"Speed regressions against {size.baseline}, in turns",
                        "Every update and meta-training throughput figure of `lopt bench perf` "
                        "and `lopt bench throughput`, each process measuring all of them once "
                        f"(median of {size.repeats} update calls, {size.throughput_repeats} "
                        f"outer steps); this commit and {size.baseline} alternate in fresh "
                        "processes, this commit first in even rounds.")
