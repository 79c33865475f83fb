"""The tables, aggregates and plots of ``lopt bench pretrained``: final normalized losses,
speedups and IQMs (the middle), and beside them the worst case: diverged and catastrophic runs,
each task's final-loss ratio to Adam at lr 1e-3 and to per-task-tuned Adam, the worst task, and
how far the weights grew (DESIGN.md: Evaluation protocol)."""
from __future__ import annotations

import numpy as np

from lopt.evaluation import plots, stats, tables
from lopt.evaluation.metrics import format_speedup, speedup
from lopt.evaluation.robustness import catastrophic, loss_ratio, worst

DEFAULT_ROW = "adam (lr 1e-3)"
TUNED_ROW = "adam (per-task lr)"
ONCE_ROW = "adam (global lr)"


def named(summaries, name):
    return next(s for s in summaries if s["name"] == name)


def finals(summary) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in summary["final"]], np.float64)


def task_speedup(learned: dict, reference: dict, reach: int) -> dict:
    """``metrics.speedup`` of a summary over a reference's ``reach`` × T run (its
    ``long_curve``), so speedups up to ``reach`` are measured."""
    steps = len(learned["mean_curve"] or [0]) - 1
    long_curve = reference["long_curve"]
    if long_curve is None:  # every reference run diverged: it reaches nothing
        long_curve = [np.nan] * (reach * steps + 1)
    return speedup(learned["mean_curve"], long_curve, diverged=learned["diverged"],
                   reference_diverged=reference["long_diverged"])


def raw_pair(summary) -> np.ndarray:
    """[initial; final] raw losses per run (NaN where the run diverged)."""
    final = [np.nan if v is None else v for v in summary["raw_final"]]
    return np.array([summary["raw_initial"], final], np.float64)


def robustness(results: dict, labels: list, columns: list) -> dict:
    """Per optimizer: diverged and catastrophic runs over the suite, per-task loss ratios to
    Adam at 1e-3 and to per-task Adam, the worst of each, and the parameter-norm growth."""
    out = {}
    for name in columns:
        rows = [named(results[label], name) for label in labels]
        default = [raw_pair(named(results[label], DEFAULT_ROW)) for label in labels]
        tuned = [raw_pair(named(results[label], TUNED_ROW)) for label in labels]
        pairs = [raw_pair(r) for r in rows]
        vs_default = [loss_ratio(p, d) for p, d in zip(pairs, default)]
        vs_tuned = [loss_ratio(p, t) for p, t in zip(pairs, tuned)]
        growth = [float(np.nanmedian(r["norm_growth"])) for r in rows]
        out[name] = {
            "diverged": sum(r["diverged"] for r in rows),
            "catastrophic": int(sum(catastrophic(p, d).sum() for p, d in zip(pairs, default))),
            "runs": sum(r["num_tasks"] for r in rows),
            "loss_ratio_vs_default": vs_default, "loss_ratio_vs_tuned": vs_tuned,
            "worst_vs_default": worst(vs_default, higher_is_better=False),
            "worst_vs_tuned": worst(vs_tuned, higher_is_better=False),
            "tasks_better_than_default": sum(v is not None and v < 1 for v in vs_default),
            "norm_growth": growth}
    return out


def _ratio_cell(v) -> str:
    return "—" if v is None else ("∞" if v == float("inf") else f"{v:.3g}")


def report(suite, sz, learned, labels, results, global_lr, overhead, state_bytes,
           reach, *, timing_cores: int) -> None:
    """Every section of the suite's results.md, its plots and its JSON payload
    (``timing_cores``: the CPU cores the step times were measured on)."""
    columns = [s["name"] for s in results[labels[0]]]
    suite.section("Final normalized loss per task",
                  "Mean ± standard error over the runs that did not diverge (0: tuned Adam's "
                  "best on the normalization's instances, 1: the initial loss; clipped to "
                  "[-2, 2], so the robustness sections below read raw losses); diverged runs "
                  "in brackets; the per-task learning rates are those tuned on the tuning "
                  "instances.\n\n"
                  + tables.matrix_table({item: results[item] for item in labels}, columns,
                                        transpose=True))
    learned_rows = [c for c in columns if not c.startswith(("adam ", "adamw "))]
    refs = [ONCE_ROW, "adamw (global lr)", TUNED_ROW, "adamw (per-task lr)", DEFAULT_ROW]
    refs = [r for r in refs if r in columns]
    speed = {name: {ref: [task_speedup(named(results[item], name), named(results[item], ref), reach)
                          for item in labels] for ref in refs} for name in learned_rows}
    lines = ["| learned | reference | " + " | ".join(labels) + " |",
             "|---|---" + "|---" * len(labels) + "|"]
    for name in learned_rows:
        for ref in refs:
            cells = [format_speedup(s, ".2f") for s in speed[name][ref]]
            lines.append(f"| {name} | {ref} | " + " | ".join(cells) + " |")
    suite.section("Speedup over Adam per task",
                  "Steps the reference's mean curve needs to reach the learned rule's final "
                  f"mean loss, over the rule's steps; references run {reach}× as long, so "
                  f"`≥ {reach}` means Adam never got there. Above 1: the learned optimizer is "
                  "faster.\n\n" + "\n".join(lines) + "\n")
    robust = robustness(results, labels, columns)
    _robustness_sections(suite, labels, columns, robust, speed)
    final = {c: stats.scores_matrix([finals(named(results[item], c)) for item in labels])
             for c in columns}
    loss_iqm = stats.iqm_with_ci(final)
    speed_iqm = stats.iqm_with_ci({f"{n} vs {r}": np.array([[s["value"]] for s in speed[n][r]])
                                   for n in learned_rows for r in refs})
    lines = tables.iqm_table(loss_iqm, final, "IQM final normalized loss")
    lines += ["", "| learned vs reference | IQM speedup over tasks | 95% CI | worst task |",
              "|---|---|---|---|"]
    for k, e in speed_iqm.items():
        n, r = k.split(" vs ")
        w = worst([s["value"] for s in speed[n][r]], higher_is_better=True)
        lines.append(f"| {k} | {e['iqm']:.3g} | [{e['low']:.3g}, {e['high']:.3g}] | "
                     f"{w['value']:.3g} ({labels[w['index']]}) |")
    suite.section("Aggregate over the meta-test set",
                  "IQM over all runs of all tasks with a 95% stratified-bootstrap interval "
                  "(rliable; runs resampled within tasks; a diverged run scores +inf). The "
                  "speedup IQM is over the per-task speedups, its interval from resampling "
                  "tasks; beside it the worst task's speedup.\n\n" + "\n".join(lines) + "\n")
    overhead = overhead or {}  # not timed (yet): an interim report, a second worker
    head = ["learned"] + [f"step time / adam on {t}" for t in overhead] + ["state bytes / "
                                                                            "parameter"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for name in learned:
        cells = [name] + [f"{overhead[t][name]:.2f}" for t in overhead]
        lines.append("| " + " | ".join(cells + [f"{state_bytes[name]:.1f}"]) + " |")
    timing = ("Seconds per inner step (8 instances, 20 steps, best of 3 after compiling) "
              f"relative to optax.adam's on the same task, measured back to back on {timing_cores} "
              "CPU core(s)" if overhead
              else "Step times not measured yet (the suite's last stage, timed alone)")
    suite.section("Wall-clock overhead and memory",
                  f"{timing}; optimizer-state bytes per parameter on {labels[0]}.\n\n"
                  + "\n".join(lines) + "\n")
    plots.interval_bars(loss_iqm, suite.figure("iqm.png"), "pretrained on the meta-test set",
                        "IQM of final normalized loss (lower is better)")
    for label in labels:
        plots.curves_with_spread(results[label], suite.figure(
            f"curves_{label.replace(', ', '_').replace(' ', '_')}.png"),
            f"{label} (meta-test)", "normalized loss")
    suite.payload.update({"tasks": labels, "global_lr": global_lr, "results": results,
                          "speedup": speed, "iqm_loss": loss_iqm, "iqm_speedup": speed_iqm,
                          "robustness": robust, "step_time_vs_adam": overhead,
                          "state_bytes": state_bytes})


def _robustness_sections(suite, labels, columns, robust, speed) -> None:
    order = sorted(columns, key=lambda c: (robust[c]["diverged"], robust[c]["catastrophic"],
                                           (robust[c]["worst_vs_default"] or {}).get("value",
                                                                                     np.inf)))
    lines = ["| optimizer | diverged | catastrophic | tasks better than adam (lr 1e-3) | "
             "worst final-loss ratio to adam (lr 1e-3) | worst ratio to adam (per-task lr) | "
             "worst speedup over adam (global lr) | median weight-norm growth (max) |",
             "|---" * 8 + "|"]
    for c in order:
        r = robust[c]
        cells = []
        for key in ("worst_vs_default", "worst_vs_tuned"):
            w = r[key]
            cells.append("—" if w is None else f"{_ratio_cell(w['value'])} "
                                                f"({labels[w['index']]})")
        once = speed.get(c, {}).get(ONCE_ROW)
        w = worst([s["value"] for s in once], True) if once else None
        cells.append("—" if w is None else f"{w['value']:.3g} ({labels[w['index']]})")
        growth = [g for g in r["norm_growth"] if np.isfinite(g)]
        lines.append(f"| {c} | {r['diverged']}/{r['runs']} | {r['catastrophic']}/{r['runs']} | "
                     f"{r['tasks_better_than_default']}/{len(labels)} | " + " | ".join(cells)
                     + f" | {np.median(growth):.2f} ({max(growth):.2f}) |")
    suite.section("The worst case: catastrophic runs and the worst task",
                  "Ranked by diverged, then catastrophic runs (a run that did not diverge but "
                  "ended above its initial loss or above 2× Adam-1e-3's final loss on the same "
                  "instance), then the worst task. Final-loss ratios are mean raw final losses "
                  "over the reference's on the same instances (above 1: worse). Weight-norm "
                  "growth: ‖θ_T‖/‖θ_0‖ per run, median over a task's runs; the table gives its "
                  "median and largest over tasks (baselines measured at the end of their "
                  "longer reference runs).\n\n" + "\n".join(lines) + "\n")
    lines = ["| optimizer | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for c in columns:
        lines.append(f"| {c} | " + " | ".join(
            f"{_ratio_cell(a)} / {_ratio_cell(b)} / {g:.2f}" for a, b, g in zip(
                robust[c]["loss_ratio_vs_default"], robust[c]["loss_ratio_vs_tuned"],
                robust[c]["norm_growth"])) + " |")
    suite.section("Per task: final-loss ratios and weight growth",
                  "Each cell: mean raw final loss over Adam-1e-3's / over per-task-tuned "
                  "Adam's / median ‖θ_T‖/‖θ_0‖.\n\n" + "\n".join(lines) + "\n")
