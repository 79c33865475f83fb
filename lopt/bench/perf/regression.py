"""``lopt bench regression``: every timing ``lopt bench perf`` and ``lopt bench throughput``
commit to — each rule's update on the 2.1M-parameter pytree, each estimator's meta-training
throughput, the whole outer step on the two tiny tasks — measured in fresh processes in turns
against an earlier commit, so a speed change can be checked for slowing anything else down
(issue 39: "no regression > 5% at equal load, measured in turns against the starting commit").

Between processes this machine's speed moves by ±30%, more than the 5% looked for, so each
figure's verdict is the median over rounds of a ratio formed within one round (neighbouring
processes), and for updates also within one process: a rule's time over optax.adam's, which
no commit here changes, cancels what the process's speed adds to both. optax.adam's own row
is that reference, not lopt's code: it shows the noise and gets no verdict. What the screen
does not find clearly faster is measured again, alone, with more calls and rounds
(``confirm``), and the confirmation's verdict is the one reported.
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
    confirm_rounds: int = 6
    confirm_repeats: int = 21
    baseline: str = BASELINE_COMMIT


FULL = Size()
QUICK = Size(rounds=1, width=128, repeats=10, throughput_repeats=3, confirm_rounds=2,
             confirm_repeats=10)
ADAM = "update optax.adam"
REFERENCES = (ADAM, "matmul 2048²")  # optax's code and the machine's rate: the noise, no verdict
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
        if name.startswith("update ") and name != ADAM:
            rel = (head / np.array([speed(h[ADAM]) for h in heads])) / \
                (base / np.array([speed(b[ADAM]) for b in bases]))
            row["relative_median"] = judged = float(np.median(rel))
            row["relative_range"] = [float(rel.min()), float(rel.max())]
        row["verdict"] = ("reference" if name in REFERENCES else
                          "slower" if judged < 1 - tolerance else
                          "faster" if judged > 1 + tolerance else "same")
        rows.append(row)
    return rows


def confirm_jobs(size: Size, slower: list) -> list:
    """The jobs that measure the figures named in ``slower`` again: their updates in one job
    beside optax.adam, their throughput jobs as they were, each with ``confirm_repeats``."""
    rules = [n.split(" ", 1)[1] for n in slower if n.startswith("update ")]
    out = []
    if rules:
        out.append({"kind": "updates", "rules": ["optax.adam", *rules], "width": size.width,
                    "repeats": size.confirm_repeats})
    for job in jobs(size):
        if job["kind"] in ("throughput", "outer") and figure_name(job) in slower:
            out.append(dict(job, repeats=size.confirm_repeats))
    return out


def merge(screen: list, confirmed: list, flagged: list) -> list:
    """The screen's rows, each ``flagged`` figure replaced by its row measured again (marked)."""
    again = {r["figure"]: dict(r, confirmed=True) for r in confirmed if r["figure"] in flagged}
    return [again.get(r["figure"], r) for r in screen]


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
        if r.get("confirmed"):
            verdict += " (measured again)"
        lines.append(f"| {r['figure']} | {r['head_median']:,.3g} | {r['baseline_median']:,.3g} "
                     f"| {r['ratio_median']:.2f}× [{_fmt_range(r['ratio_range'])}] | {rel} | "
                     f"{verdict} |")
    return "\n".join(lines)


def _plot(rows: list, baseline: str, path: str) -> None:
    # Without pyplot, as lopt.evaluation.plots draws: the caller's backend stays as it was.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 0.28 * len(rows) + 1.2), dpi=120)
    ax = fig.subplots()
    for i, r in enumerate(rows):
        med, rng = ((r["relative_median"], r["relative_range"]) if "relative_median" in r
                    else (r["ratio_median"], r["ratio_range"]))
        color = {"slower": "tab:red", "reference": "tab:gray"}.get(r["verdict"], "tab:blue")
        ax.plot(rng, [i, i], color=color, lw=1)
        ax.plot([med], [i], "o", color=color)
    ax.axvline(1 - TOLERANCE, color="tab:red", ls="--", lw=0.8)
    ax.axvline(1.0, color="black", lw=0.5)
    ax.set_yticks(range(len(rows)), [r["figure"] for r in rows], fontsize=6)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ticks = [0.5, 0.75, 1.0, 1.5, 2.0, 4.0, 8.0]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.minorticks_off()
    ax.set(xlabel=f"speed, this commit / {baseline} (median and range over rounds)")
    fig.tight_layout()
    fig.savefig(path)


def run(out: str, quick: bool = False, command: str = "lopt bench regression",
        progress: bool = True) -> str:
    size = SIZES["quick" if quick else "full"]
    suite = Suite("regression", out, size, command, 2, progress)
    screen_tag = {k: getattr(size, k) for k in ("rounds", "width", "repeats",
                                                "throughput_repeats", "baseline")}
    turns = suite.cached("turns", lambda: throughput.alternate(jobs(size), size.rounds,
                                                               size.baseline, "regression"),
                         tag=screen_tag)
    screen = summary(turns)
    # "same" on three noisy rounds is not yet "not slower": only a clear gain skips a second look.
    flagged = [r["figure"] for r in screen if r["verdict"] in ("slower", "same")]
    confirm = confirm_jobs(size, flagged)
    again = suite.cached("confirm", lambda: throughput.alternate(
        confirm, size.confirm_rounds, size.baseline, "regression") if confirm else None,
        tag={"jobs": confirm, "rounds": size.confirm_rounds, "baseline": size.baseline})
    rows = merge(screen, summary(again) if again else [], flagged)
    suite.payload.update(turns=turns, confirm=again, screen=screen, summary=rows)
    slower = [r["figure"] for r in rows if r["verdict"] == "slower"]
    _plot(rows, size.baseline, suite.figure("ratios.png"))
    suite.section(
        f"Speed against {size.baseline}, {size.rounds} rounds in turns",
        "Speeds: updates per second (update rows), inner steps per second (estimators and "
        "outer steps), GFLOP/s (matmul). A verdict is read from the in-process ratio to "
        f"optax.adam where there is one, else from the ratio over rounds; ±{TOLERANCE:.0%} "
        "counts as the same. optax.adam's row is the reference (optax's code, the same on "
        "both sides) and the matmul rate the machine's: their spread is the noise. A figure "
        f"the screen did not find faster by more than {TOLERANCE:.0%} was measured again "
        f"alone, {size.confirm_rounds} rounds of {size.confirm_repeats} calls, and its row "
        "is that measurement.\n\n" + table(rows, size.baseline) + "\n\n"
        + (f"Slower by more than {TOLERANCE:.0%}: {', '.join(slower)}." if slower else
           f"Nothing is slower by more than {TOLERANCE:.0%}."))
    return suite.finish(f"Speed regressions against {size.baseline}, in turns",
                        "Every update and meta-training throughput figure of `lopt bench perf` "
                        "and `lopt bench throughput`, each process measuring all of them once "
                        f"(median of {size.repeats} update calls, {size.throughput_repeats} "
                        f"outer steps); this commit and {size.baseline} alternate in fresh "
                        "processes, this commit first in even rounds.")
