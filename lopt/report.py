"""Tables (markdown), plots (PNG) and JSON for comparisons and meta-training histories."""
from __future__ import annotations

import json
import math
import os
from typing import Sequence


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
    from lopt.evaluation import rank_key

    clean = [s["final_mean"] for s in summaries
             if s["diverged"] == 0 and s["final_mean"] is not None and math.isfinite(s["final_mean"])]
    best = min(clean) if clean else None
    lines = [
        f"Final loss after {num_steps} steps on {num_tasks} held-out instances, mean (± standard "
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


def plot_curves(summaries: Sequence[dict], path: str, title: str) -> None:
    """Mean loss against inner step for every optimizer, log-scaled, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lopt.evaluation import rank_key

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for s in sorted(summaries, key=rank_key):
        if s["mean_curve"] is None:
            continue  # every run diverged: nothing to draw, the table says so
        label = s["name"] if s["learning_rate"] is None else f"{s['name']} (lr {s['learning_rate']:.2g})"
        if s["diverged"]:
            label += f", {s['diverged']} diverged"
        ax.plot(s["mean_curve"], label=label, lw=2.2 if s["learning_rate"] is None else 1.4)
    _finish(fig, ax, path, title, "inner step",
            "mean loss over held-out instances\n(runs that did not diverge)")


def plot_history(history: Sequence[dict], path: str, title: str) -> None:
    """The meta-loss against outer step (with a running mean), saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    steps = np.array([h["step"] for h in history])
    values = np.array([h["meta_loss"] for h in history])
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=120)
    ax.plot(steps, values, alpha=0.3, lw=0.8, label="meta-loss")
    width = max(1, len(values) // 50)
    if len(values) >= width:
        smooth = np.convolve(values, np.ones(width) / width, mode="valid")
        ax.plot(steps[width - 1:], smooth, lw=1.8, label=f"running mean ({width})")
    _finish(fig, ax, path, title, "outer step", "meta-loss")


def _finish(fig, ax, path, title, xlabel, ylabel) -> None:
    """Log y axis (symmetric log when a value is <= 0, as normalized losses can be), labels,
    grid and legend; save the PNG and free the figure."""
    import matplotlib.pyplot as plt
    import numpy as np

    values = np.concatenate([np.asarray(line.get_ydata(), float) for line in ax.get_lines()]
                            or [np.ones(1)])
    finite = values[np.isfinite(values)]
    if finite.size and finite.min() <= 0:
        ax.set_yscale("symlog", linthresh=1e-2)
    else:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, which="both")
    if ax.get_lines():
        ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def strict(value):
    """``value`` with every non-finite float (NaN, ±inf) replaced by None, so it is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    return value


def write_json(path: str, payload: dict) -> None:
    """``payload`` as strict JSON (non-finite numbers as null)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(strict(payload), f, indent=1, allow_nan=False)
        f.write("\n")
