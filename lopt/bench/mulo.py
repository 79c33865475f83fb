"""``lopt bench mup``: μLO's central experiment (Thérien et al. 2026, "μLO: compute-efficient
meta-generalization of learned optimizers", Figure 1) on this machine's scale — one learned
rule meta-trained at a small width, tested as the width grows.

Four optimizers on 2-hidden-layer ReLU MLPs on MNIST (``mnist_5k_14``), widths 32 … 2,048:

- **μLO**: ``adafac_mlp`` meta-trained on the μP MLP (``lopt.tasks.mup``, μP base = the base
  width, so at that width model and steps are standard) with every step times the model's μP
  multipliers (``lopt.mup.mup_rule``), tested on μP MLPs;
- **LO (SP)**: the same rule, estimator, seed and budget meta-trained on the standard-
  parameterized MLP at the base width, tested on standard MLPs (μLO's "SP" baseline);
- **μAdam**: Adam on the μP MLPs with the same multipliers (hidden layers' step base width /
  width), its learning rate tuned once at the base width;
- **Adam (SP)**: Adam on the standard MLPs, learning rate tuned once at the base width.

Nothing is re-tuned per width: that is the transfer being measured.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from lopt.bench.suite import Suite, finals, protocol_line
from lopt.evaluation import plots, tables
from lopt.outer import PES
from lopt.outer.mup_rule import mup_rule
from lopt.rules import BASELINES, make_rule
from lopt.tasks.mlp import mlp_family
from lopt.tasks.mup import StepMultipliers, mup_mlp_family

DATA = "mnist_5k_14"
ORDER = ("μLO", "LO (SP)", "μAdam", "Adam (SP)")


@dataclasses.dataclass(frozen=True)
class Size:
    base_width: int
    widths: tuple
    depth: int
    meta_steps: int
    meta_tasks: int
    truncation: int
    horizon: int
    eval_tasks: int
    tune_tasks: int
    eval_steps: int


SIZES = {
    "tiny": Size(8, (8,), 2, 1, 2, 2, 4, 2, 1, 3),
    "quick": Size(32, (32, 128, 512), 2, 30, 8, 10, 100, 4, 2, 100),
    "full": Size(64, (32, 64, 128, 256, 512, 1024, 2048), 2, 500, 16, 20, 300, 8, 4, 300),
}


def families(width: int, depth: int, base_width: int):
    """(μP MLP of base ``base_width``, standard MLP) at ``width``."""
    return (mup_mlp_family(DATA, width=width, depth=depth, base_width=base_width),
            mlp_family(DATA, hidden=(width,) * depth, activation="relu"))


def run(out: str, quick: bool = False, command: str = "lopt bench mup",
        progress: bool = True) -> str:
    sz = SIZES["quick" if quick else "full"]
    suite = Suite("mup", out, sz, command, 2 + 2 * len(sz.widths) + 2, progress)
    rule = make_rule("adafac_mlp", init="momentum")
    scaling = StepMultipliers("mlp", sz.base_width)
    mu_rule = mup_rule(rule, scaling)
    estimator = PES(num_runs=sz.meta_tasks, truncation=sz.truncation, horizon=sz.horizon)
    mu_base, sp_base = families(sz.base_width, sz.depth, sz.base_width)
    theta_mu = suite.meta_train("mulo", mu_rule, mu_base, estimator, steps=sz.meta_steps)
    theta_sp = suite.meta_train("lo_sp", rule, sp_base, estimator, steps=sz.meta_steps)

    adam = BASELINES["adam"][0]
    def mu_adam(learning_rate):
        return mup_rule(adam(learning_rate=learning_rate), scaling)

    common = dict(num_tasks=sz.eval_tasks, tune_tasks=sz.tune_tasks, num_steps=sz.eval_steps)
    # Adam's learning rates, tuned once at the base width on the tuning instances.
    tuned_mu = suite.compare("tune_mu_adam", {}, {"μAdam": mu_adam}, mu_base, **common)
    tuned_sp = suite.compare("tune_adam", {}, {"Adam (SP)": adam}, sp_base, **common)
    lr_mu, lr_sp = tuned_mu[0]["learning_rate"], tuned_sp[0]["learning_rate"]
    edge = [s["name"] for s in tuned_mu + tuned_sp if s.get("lr_at_grid_edge")]

    rows = {}
    for width in sz.widths:
        mu_family, sp_family = families(width, sz.depth, sz.base_width)
        mu = suite.compare(f"mup_{width}", {"μLO": (mu_rule, theta_mu),
                                            "μAdam": (mu_adam(lr_mu), {})}, {}, mu_family,
                           **common)
        sp = suite.compare(f"sp_{width}", {"LO (SP)": (rule, theta_sp),
                                           "Adam (SP)": (adam(learning_rate=lr_sp), {})}, {},
                           sp_family, **common)
        by_name = {s["name"]: s for s in mu + sp}
        rows[width] = [by_name[n] for n in ORDER]

    series = {name: [finals(rows[w][i]) for w in sz.widths] for i, name in enumerate(ORDER)}
    plots.final_loss_versus(sz.widths, series, suite.figure("loss_vs_width.png"),
                            f"loss after {sz.eval_steps} steps; trained or tuned at width "
                            f"{sz.base_width}", "hidden width")
    largest = sz.widths[-1]
    plots.curves_with_spread(rows[largest], suite.figure(f"curves_width_{largest}.png"),
                             f"width {largest}: training loss (evaluation instances)")
    table = tables.matrix_table({f"{w}" + (" (base)" if w == sz.base_width else ""): rows[w]
                                 for w in sz.widths}, list(ORDER), first="width")
    suite.section(
        "Loss vs width (μLO, Figure 1)",
        f"{protocol_line(sz.eval_tasks, sz.tune_tasks, sz.eval_steps)} Both learned rules are "
        f"`adafac_mlp` (started as normalized momentum) meta-trained with PES for "
        f"{sz.meta_steps} outer steps ({sz.meta_tasks} runs, truncation {sz.truncation}, horizon "
        f"{sz.horizon}) at width {sz.base_width} only; Adam's learning rates were tuned at width "
        f"{sz.base_width} only (μAdam {lr_mu:.3g}, Adam {lr_sp:.3g}"
        + (f"; at the grid's edge: {', '.join(edge)}" if edge else "") + "). Final minibatch "
        f"training loss of {sz.depth}-hidden-layer ReLU MLPs on {DATA}, mean ± standard error "
        "(diverged runs in brackets):\n\n" + table)
    suite.payload.update({"widths": list(sz.widths), "base_width": sz.base_width,
                          "adam_lr": {"μAdam": lr_mu, "Adam (SP)": lr_sp},
                          "results": {str(w): rows[w] for w in sz.widths},
                          "median_final": {n: [None if not np.isfinite(np.nanmedian(v))
                                               else float(np.nanmedian(v)) for v in series[n]]
                                           for n in ORDER}})
    return suite.finish(
        "μLO: a learned optimizer meta-trained at one width, tested at many (Thérien et al. "
        "2026)",
        "The paper (Figure 1) meta-trains at width 128 and tests up to 8,192 on MLPs and "
        "transformers: μLO's loss keeps falling with width like μAdam's, while the SP learned "
        "optimizer's stalls or diverges. Below, the same experiment at this machine's scale.")
