"""Markdown tables of results: one comparison's ranking, task x optimizer grids of a summary
field, and IQM tables with their intervals."""
from __future__ import annotations

import math
from typing import Dict, Sequence

import numpy as np

from lopt.evaluation.curves import rank_key


def _num(x, fmt):
    return "—" if x is None else format(x, fmt)


def format_loss(s) -> str:
    """Mean final loss ± standard error of a summary, "—" for what it does not have."""
    if s["final_mean"] is None or not math.isfinite(s["final_mean"]):
        return "—"
    sem = "" if s["final_sem"] is None else f" ± {s['final_sem']:.2g}"
    return f"{s['final_mean']:.4g}{sem}"


def comparison_table(summaries: Sequence[dict], num_tasks: int, num_steps: int,
                     tuning_tasks: int | None = None, tuning_note: str | None = None) -> str:
    """A markdown table of diverged runs, mean final loss (± standard error), median, and tuned
    learning rate; any divergence ranks below every optimizer without (``rank_key``).
    ``tuning_note`` replaces the sentence on how baselines were tuned."""
    clean = [s["final_mean"] for s in summaries
             if s["diverged"] == 0 and s["final_mean"] is not None
             and math.isfinite(s["final_mean"])]
    best = min(clean) if clean else None
    lines = [
        f"Final loss after {num_steps} steps on {num_tasks} evaluation instances, mean (± standard "
        "error) over the runs that did not diverge; a run whose loss turned non-finite at any "
        "step counts in `diverged`, and any divergence ranks an optimizer below all without. "
        + (tuning_note if tuning_note else
           f"Baselines' learning rates are tuned on a log grid on {tuning_tasks} separate "
           "tuning instances." if tuning_tasks else
           "Baselines' learning rates are tuned on a log grid on these same instances."),
        "",
        "| optimizer | learning rate | diverged | mean final loss | median final loss | / best |",
        "|---|---|---|---|---|---|",
    ]
    for s in sorted(summaries, key=rank_key):
        lr = "learned" if s["learning_rate"] is None else f"{s['learning_rate']:.3g}"
        if s.get("lr_at_grid_edge"):
            lr += " (grid edge)"
        # A ratio means nothing when the best loss is not positive (normalized losses) or the
        # row's runs are not all there.
        ratio = (f"{s['final_mean'] / best:.2f}"
                 if best is not None and best > 0 and s["diverged"] == 0
                 and s["final_mean"] is not None and math.isfinite(s["final_mean"]) else "—")
        lines.append(f"| {s['name']} | {lr} | {s['diverged']}/{s.get('num_tasks', num_tasks)} | "
                     f"{format_loss(s)} | "
                     f"{_num(s['final_median'], '.4g')} | {ratio} |")
    return "\n".join(lines) + "\n"


def cell(summary: dict) -> str:
    """Mean final loss ± standard error, with the diverged count when there is one."""
    text = format_loss(summary)
    if summary["diverged"]:
        text += f" ({summary['diverged']}/{summary['num_tasks']} diverged)"
    return text


def matrix_table(rows: Dict[str, Sequence[dict]], columns: Sequence[str],
                 first: str = "task", transpose: bool = False) -> str:
    """A markdown table with a row per task and a column per optimizer (its ``cell``); the
    best mean among optimizers without divergence for each task is bold. ``transpose``: a row
    per optimizer and a column per task, for many optimizers."""
    cells = {}
    for task, summaries in rows.items():
        by_name = {s["name"]: s for s in summaries}
        clean = [by_name[c]["final_mean"] for c in columns
                 if c in by_name and by_name[c]["diverged"] == 0
                 and by_name[c]["final_mean"] is not None]
        best = min(clean) if clean else None
        for c in columns:
            if c not in by_name:
                cells[task, c] = "—"
                continue
            text = cell(by_name[c])
            if best is not None and by_name[c]["diverged"] == 0 and \
                    by_name[c]["final_mean"] == best:
                text = f"**{text}**"
            cells[task, c] = text
    return _grid(cells, list(rows), list(columns), first, transpose)


def _grid(cells: dict, tasks: list, columns: list, first: str, transpose: bool) -> str:
    heads, names = (tasks, columns) if transpose else (columns, tasks)
    lines = [f"| {'optimizer' if transpose else first} | " + " | ".join(heads) + " |",
             "|---" * (len(heads) + 1) + "|"]
    for name in names:
        row = [cells[h, name] if transpose else cells[name, h] for h in heads]
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def field_table(rows: Dict[str, Sequence[dict]], columns: Sequence[str], field: str,
                fmt: str = ".4g", first: str = "task", transpose: bool = False) -> str:
    """A task x optimizer markdown table of one summary field (e.g. ``test_accuracy``)."""
    cells = {}
    for task, summaries in rows.items():
        by_name = {s["name"]: s for s in summaries}
        for c in columns:
            value = by_name.get(c, {}).get(field)
            cells[task, c] = "—" if value is None else format(value, fmt)
    return _grid(cells, list(rows), list(columns), first, transpose)


def iqm_table(estimates: Dict[str, dict], scores: Dict[str, np.ndarray], label: str) -> list:
    """Markdown lines: each optimizer's IQM (``stats.iqm_with_ci``), its interval and how many
    of its runs diverged (+inf in ``scores``), best first; ``label`` heads the IQM column."""
    lines = [f"| optimizer | {label} | 95% CI | diverged runs |", "|---|---|---|---|"]
    for c in sorted(estimates, key=lambda c: estimates[c]["iqm"]):
        e = estimates[c]
        lines.append(f"| {c} | {e['iqm']:.3g} | [{e['low']:.3g}, {e['high']:.3g}] | "
                     f"{int(np.isinf(scores[c]).sum())}/{scores[c].size} |")
    return lines
