"""PNG figures of results: curves (with their spread over runs), meta-training histories, IQM
bars with confidence intervals, performance profiles and heatmaps."""
from __future__ import annotations

import textwrap
from typing import Dict, Sequence

import matplotlib.colors as colors
import numpy as np
from matplotlib.figure import Figure

from lopt.evaluation.curves import rank_key


def fitted(title: str, fig: Figure, fontsize: float = 12.0) -> str:
    """``title`` wrapped into lines that fit the figure's width (a glyph averages about 0.6 of
    the font size), so a long title is never clipped at the figure's edges."""
    chars = max(20, int(fig.get_figwidth() * 72 / (0.6 * fontsize)))
    return "\n".join(textwrap.wrap(title, chars, break_long_words=False)) or title


def plot_curves(summaries: Sequence[dict], path: str, title: str) -> None:
    """Mean loss against inner step for every optimizer, log-scaled, saved as a PNG."""
    fig = Figure(figsize=(6.4, 4.2), dpi=120)
    ax = fig.subplots()
    for s in sorted(summaries, key=rank_key):
        if s["mean_curve"] is None:
            continue  # every run diverged: nothing to draw, the table says so
        label = s["name"] if s["learning_rate"] is None else \
            f"{s['name']} (lr {s['learning_rate']:.2g})"
        if s["diverged"]:
            label += f", {s['diverged']} diverged"
        ax.plot(s["mean_curve"], label=label, lw=2.2 if s["learning_rate"] is None else 1.4)
    _finish(fig, ax, path, title, "inner step",
            "mean loss over evaluation instances\n(runs that did not diverge)")


def plot_history(history: Sequence[dict], path: str, title: str) -> None:
    """The meta-loss against outer step (with a running mean) and the meta-validation score
    where it was logged, saved as a PNG."""
    steps = np.array([h["step"] for h in history])
    values = np.array([h["meta_loss"] for h in history])
    fig = Figure(figsize=(6.4, 3.6), dpi=120)
    ax = fig.subplots()
    ax.plot(steps, values, alpha=0.3, lw=0.8, label="meta-loss")
    width = max(1, len(values) // 50)
    if len(values) >= width:
        smooth = np.convolve(values, np.ones(width) / width, mode="valid")
        ax.plot(steps[width - 1:], smooth, lw=1.8, label=f"running mean ({width})")
    checked = [h for h in history if "valid/mean" in h]
    if checked:  # meta-validation (lopt.evaluation.meta_validation) where it ran
        ax.plot([h["step"] for h in checked], [h["valid/mean"] for h in checked], "o-",
                ms=3, lw=1.2, label="meta-validation (held-out instances)")
    _finish(fig, ax, path, title, "outer step", "meta-loss")


def _finish(fig, ax, path, title, xlabel, ylabel) -> None:
    """Log y axis (symmetric log when a value is <= 0, as normalized losses can be), labels,
    grid and legend; save the PNG. Figures are made without pyplot, so plotting never changes
    the caller's matplotlib backend or keeps figures alive."""
    values = np.concatenate([np.asarray(line.get_ydata(), float) for line in ax.get_lines()]
                            or [np.ones(1)])
    finite = values[np.isfinite(values)]
    if finite.size and finite.min() <= 0:
        ax.set_yscale("symlog", linthresh=1e-2)
    else:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(fitted(title, fig))
    ax.grid(alpha=0.3, which="both")
    if ax.get_lines():
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)


def curves_with_spread(summaries: Sequence[dict], path: str, title: str,
                       ylabel: str = "loss") -> None:
    """Mean curve of each optimizer over the runs that did not diverge, with the 25–75%
    quantile band across runs; log y axis."""
    fig = Figure(figsize=(6.4, 4.2), dpi=110)
    ax = fig.subplots()
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
    ax.set(xlabel="inner step", ylabel=ylabel, title=fitted(title, fig))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


def final_loss_versus(axis, series: Dict[str, Sequence], path: str, title: str,
                      xlabel: str) -> Dict[str, list]:
    """Each optimizer's median final loss against a structural axis (log2 x, e.g. width), with
    the 25–75% band over runs; diverged runs (NaN) are left out and counted in the legend.
    Returns what was drawn: legend label -> medians."""
    drawn = {}
    fig = Figure(figsize=(6.4, 4.2), dpi=110)
    ax = fig.subplots()
    for name, per_point in series.items():
        per_point = [np.asarray(v, np.float64) for v in per_point]
        ok = [v[np.isfinite(v)] for v in per_point]
        x = [a for a, v in zip(axis, ok) if v.size]
        if not x:
            continue
        q = np.array([np.quantile(v, [0.25, 0.5, 0.75]) for v in ok if v.size])
        diverged = sum(int(np.sum(~np.isfinite(v))) for v in per_point)
        label = name + (f" ({diverged} diverged)" if diverged else "")
        line, = ax.plot(x, q[:, 1], marker="o", lw=1.6, label=label)
        ax.fill_between(x, q[:, 0], q[:, 2], color=line.get_color(), alpha=0.15)
        drawn[label] = q[:, 1].tolist()
    ax.set_xscale("log", base=2)
    _finish(fig, ax, path, title, xlabel, "final loss (median, 25–75% band)")
    return drawn


def interval_bars(estimates: Dict[str, dict], path: str, title: str, xlabel: str) -> None:
    """Horizontal bars of each optimizer's IQM with its confidence interval as an error bar."""
    names = list(estimates)
    fig = Figure(figsize=(6.4, 0.45 * len(names) + 1.4), dpi=110)
    ax = fig.subplots()
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
    ax.set(xlabel=xlabel, title=fitted(title, fig))
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    fig.savefig(path)


def profiles(profile: Dict[str, dict], path: str, title: str, xlabel: str) -> None:
    """Performance profiles: the fraction of runs with loss at most τ, with bootstrap bands."""
    fig = Figure(figsize=(6.4, 4.2), dpi=110)
    ax = fig.subplots()
    for name, p in profile.items():
        line, = ax.plot(p["taus"], p["fraction"], label=name, lw=1.5)
        ax.fill_between(p["taus"], p["low"], p["high"], color=line.get_color(), alpha=0.15, lw=0)
    ax.set(xlabel=xlabel, ylabel="fraction of runs with loss ≤ τ", title=fitted(title, fig),
           ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


def heatmap(values, row_labels: Sequence[str], col_labels: Sequence[str], path: str, title: str,
            colorbar: str) -> None:
    """A labelled heatmap (log color scale of positive values; NaN cells shown as blank)."""
    values = np.asarray(values, np.float64)
    fig = Figure(figsize=(1.0 * len(col_labels) + 2.4, 0.5 * len(row_labels) + 1.6),
                 dpi=110)
    ax = fig.subplots()
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
    ax.set_title(fitted(title, fig))
    fig.colorbar(image, ax=ax, label=colorbar)
    fig.tight_layout()
    fig.savefig(path)
