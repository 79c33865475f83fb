"""The suites' tables and figures: paper-style task x optimizer tables, curves with their spread
over runs, IQM bars with confidence intervals, performance profiles and heatmaps."""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def cell(summary: dict) -> str:
    """Mean final loss ± standard error, with the diverged count when there is one."""
    from lopt.report import format_loss

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


def curves_with_spread(summaries: Sequence[dict], path: str, title: str,
                       ylabel: str = "loss") -> None:
    """Mean curve of each optimizer over the runs that did not diverge, with the 25–75%
    quantile band across runs; log y axis."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for s in summaries:
        if s.get("mean_curve") is None:
            continue
        label = s["name"] + (f" ({s['diverged']} diverged)" if s["diverged"] else "")
        line, = ax.plot(s["mean_curve"], lw=1.8 if s["learning_rate"] is None else 1.2,
                        label=label)
        if s.get("q25_curve") is not None:
            x = np.arange(len(s["q25_curve"]))
            ax.fill_between(x, s["q25_curve"], s["q75_curve"], color=line.get_color(),
                            alpha=0.15, lw=0)
    values = np.concatenate([np.asarray(s[k], np.float64) for s in summaries
                             for k in ("mean_curve", "q25_curve") if s.get(k) is not None]
                            or [np.ones(1)])
    # Normalized losses go below 0 (better than Adam's reference): symmetric log there.
    if np.nanmin(values) > 0:
        ax.set_yscale("log")
    else:
        ax.set_yscale("symlog", linthresh=1e-2)
    ax.set(xlabel="inner step", ylabel=ylabel, title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def iqm_table(estimates: Dict[str, dict], scores: Dict[str, np.ndarray], label: str) -> list:
    """Markdown lines: each optimizer's IQM (``stats.iqm_with_ci``), its interval and how many
    of its runs diverged (+inf in ``scores``), best first; ``label`` heads the IQM column."""
    lines = [f"| optimizer | {label} | 95% CI | diverged runs |", "|---|---|---|---|"]
    for c in sorted(estimates, key=lambda c: estimates[c]["iqm"]):
        e = estimates[c]
        lines.append(f"| {c} | {e['iqm']:.3g} | [{e['low']:.3g}, {e['high']:.3g}] | "
                     f"{int(np.isinf(scores[c]).sum())}/{scores[c].size} |")
    return lines


def interval_bars(estimates: Dict[str, dict], path: str, title: str, xlabel: str) -> None:
    """Horizontal bars of each optimizer's IQM with its confidence interval as an error bar."""
    plt = _plt()
    names = list(estimates)
    fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(names) + 1.4), dpi=110)
    for i, name in enumerate(names):
        e = estimates[name]
        if not np.isfinite(e["iqm"]):
            ax.text(0, i, "  IQM infinite: over a quarter of runs diverged", va="center",
                    fontsize=7)
            continue
        high = e["high"] if np.isfinite(e["high"]) else e["iqm"]
        ax.barh(i, e["iqm"], color="C0", alpha=0.6)
        ax.errorbar(e["iqm"], i, xerr=[[e["iqm"] - e["low"]], [high - e["iqm"]]],
                    color="k", capsize=3)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.set(xlabel=xlabel, title=title)
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def profiles(profile: Dict[str, dict], path: str, title: str, xlabel: str) -> None:
    """Performance profiles: the fraction of runs with loss at most τ, with bootstrap bands."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for name, p in profile.items():
        line, = ax.plot(p["taus"], p["fraction"], label=name, lw=1.5)
        ax.fill_between(p["taus"], p["low"], p["high"], color=line.get_color(), alpha=0.15, lw=0)
    ax.set(xlabel=xlabel, ylabel="fraction of runs with loss ≤ τ", title=title, ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def heatmap(values, row_labels: Sequence[str], col_labels: Sequence[str], path: str, title: str,
            colorbar: str) -> None:
    """A labelled heatmap (log color scale of positive values; NaN cells shown as blank)."""
    import matplotlib.colors as colors

    plt = _plt()
    values = np.asarray(values, np.float64)
    fig, ax = plt.subplots(figsize=(1.0 * len(col_labels) + 2.4, 0.5 * len(row_labels) + 1.6),
                           dpi=110)
    finite = values[np.isfinite(values) & (values > 0)]
    norm = colors.LogNorm(finite.min(), finite.max()) if finite.size and \
        finite.min() < finite.max() else None
    image = ax.imshow(np.where(values > 0, values, np.nan), cmap="viridis_r", norm=norm,
                      aspect="auto")
    for (i, j), v in np.ndenumerate(values):
        ax.text(j, i, "div." if not np.isfinite(v) else f"{v:.3g}", ha="center", va="center",
                fontsize=7, color="w")
    ax.set_xticks(range(len(col_labels)), col_labels, fontsize=8, rotation=30)
    ax.set_yticks(range(len(row_labels)), row_labels, fontsize=8)
    ax.set_title(title)
    fig.colorbar(image, ax=ax, label=colorbar)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
