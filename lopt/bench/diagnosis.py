"""``lopt bench diagnosis``: why is the shipped ``adafac_tiny`` behind tuned Adam even on the
tasks it was meta-trained on? Short controlled meta-trainings on the recipe's own mixture
(``mixture:tiny_images``, normalized losses), each changing one thing from the recipe, all with
the same seed and the same inner-step budget, then every result on held-out instances of the
four training families at 300 steps beside Adam tuned per family.

The candidates (issue 24): the step scale (β = 10⁻³ starts the rule at Adam-10⁻³ size and only
the slow exp(10⁻³·m) path can grow it), the magnitude path itself, the meta-objective (mean
over each truncation vs its last loss; validation vs training loss), truncation length, PES
variance (runs per outer step) and the rule (Celo2's normalized, orthogonalized step).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from lopt.bench.suite import Suite
from lopt.evaluation import normalize_all, plots, tables
from lopt.outer import PES
from lopt.rules import BASELINES, make_rule
from lopt.tasks import make_family

TASK = "mixture:tiny_images"
# The adafac_tiny recipe's settings (lopt/pretrained/recipes.py; tests/bench check they agree).
RECIPE = {"rule": "adafac_mlp", "rule_kwargs": {"init": "momentum"}, "num_runs": 32,
          "truncation": 20, "horizon": 100, "max_horizon": 1000, "sigma": 0.01,
          "objective": "valid", "weighting": "mean", "meta_lr": 1e-3}

# name -> (what changes, rule kwargs, estimator changes). Every row keeps the inner-step budget
# of the control (outer steps × runs × truncation), so a change that makes an outer step
# dearer gets fewer of them.
VARIANTS = {
    "control": ("the adafac_tiny recipe", {}, {}),
    "step_scale_1e-2": ("β = 10⁻²: the rule starts at 10× the step", {"step_scale": 1e-2}, {}),
    "celo2": ("celo2 (normalized, orthogonalized step; started as Muon) at β = 10⁻², Adam's "
              "tuned learning rate on these tasks", {"rule": "celo2", "step_scale": 1e-2}, {}),
    "weighting_last": ("meta-objective: each truncation's last loss, not its mean", {},
                       {"weighting": "last"}),
    "objective_train": ("meta-objective: the training loss, not the validation loss", {},
                        {"objective": "train"}),
    "exp_scale_1e-2": ("α = 10⁻²: the magnitude output moves the step 10× faster",
                       {"exp_scale": 1e-2}, {}),
    "truncation_50": ("truncations of 50 steps, not 20", {}, {"truncation": 50}),
    "runs_64": ("64 PES runs per outer step, not 32 (half the variance)", {},
                {"num_runs": 64}),
}


@dataclasses.dataclass(frozen=True)
class Size:
    steps: int  # outer steps of the control
    eval_tasks: int
    tune_tasks: int
    eval_steps: int
    variants: tuple
    reference_tasks: int  # instances behind each family's normalization


SIZES = {
    "tiny": Size(2, 2, 2, 5, ("control", "step_scale_1e-2"), 2),
    "quick": Size(20, 4, 2, 100, ("control", "step_scale_1e-2", "celo2"), 4),
    "full": Size(300, 16, 8, 300, tuple(VARIANTS), 8),
}


def variant_settings(name: str, control_steps: int) -> tuple:
    """(rule, estimator, outer steps) of one row."""
    _, rule_changes, changes = VARIANTS[name]
    kwargs = dict(RECIPE["rule_kwargs"], **rule_changes)
    rule = make_rule(kwargs.pop("rule", RECIPE["rule"]), **kwargs)
    settings = {k: RECIPE[k] for k in ("num_runs", "truncation", "horizon", "max_horizon",
                                       "sigma", "objective", "weighting")}
    settings.update(changes)
    budget = RECIPE["num_runs"] * RECIPE["truncation"]
    steps = max(1, control_steps * budget // (settings["num_runs"] * settings["truncation"]))
    return rule, PES(**settings), steps


def run(out: str, quick: bool = False, command: str = "lopt bench diagnosis",
        progress: bool = True) -> str:
    sz = SIZES["quick" if quick else "full"]
    family = normalize_all(make_family(TASK), num_steps=RECIPE["horizon"],
                           num_tasks=sz.reference_tasks)
    suite = Suite("diagnosis", out, sz, command,
                  (len(sz.variants) + 1) * (1 + len(family.families)), progress)
    adam = {"adam (tuned per family)": BASELINES["adam"][0]}
    common = dict(num_tasks=sz.eval_tasks, tune_tasks=sz.tune_tasks, num_steps=sz.eval_steps)
    # Adam first, tuned per family once; then each row evaluated as soon as it is trained, so
    # a stopped suite has every finished row's numbers cached.
    rows = {m.name.removesuffix("_normalized"): list(suite.compare(
        f"adam_{m.name}", {}, adam, m, **common)) for m in family.families}
    budget = {}
    for name in sz.variants:
        rule, estimator, steps = variant_settings(name, sz.steps)
        theta = suite.meta_train(name, rule, family, estimator, steps=steps,
                                 meta_lr=RECIPE["meta_lr"], checkpoint_every=50)
        budget[name] = steps
        for m in family.families:
            rows[m.name.removesuffix("_normalized")][-1:-1] = suite.compare(
                f"eval_{name}_{m.name}", {name: (rule, theta)}, {}, m, **common)
    columns = list(sz.variants) + list(adam)
    means = {c: float(np.nanmean([next(s["final_mean"] for s in r if s["name"] == c)
                                  for r in rows.values()])) for c in columns}
    legend = "\n".join(f"- `{n}`: {VARIANTS[n][0]}; {budget[n]} outer steps" for n in sz.variants)
    summary = "| row | mean normalized final loss over the four families |\n|---|---|\n" + \
        "\n".join(f"| `{c}` | {means[c]:.4f} |" for c in sorted(columns, key=means.get))
    suite.section(
        "One change at a time",
        f"Each row meta-trains on `{TASK}` (normalized losses; PES, seed 0) with one change from "
        "the recipe and the same inner-step budget, then runs on "
        f"{sz.eval_tasks} held-out instances of each training family for {sz.eval_steps} steps "
        f"(normalized: 1 the initial loss, 0 tuned Adam's best); Adam's learning rate is tuned "
        f"per family on {sz.tune_tasks} separate instances.\n\n{legend}\n\n{summary}\n\n"
        "Per family, mean ± standard error:\n\n"
        + tables.matrix_table(rows, columns, first="family"))
    plots.curves_with_spread(next(iter(rows.values())), suite.figure("curves.png"),
                             f"{next(iter(rows))}: normalized loss (held-out instances)")
    suite.payload.update({"rows": rows, "mean_final": means, "outer_steps": budget,
                          "variants": {n: VARIANTS[n][0] for n in sz.variants}})
    return suite.finish("Why adafac_tiny is behind tuned Adam in distribution: one change at a "
                        "time", "Issue 24's diagnosis. Rows sorted by mean normalized final loss "
                        "(lower is better).")
