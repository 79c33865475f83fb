"""``lopt bench multiscale``: Shahid 2017, Multiscale Adam — LWA_a/b/c, MLP, RNN_a and
RNN_b over Adam at k timescales, meta-trained on the MNIST MLP: the learned weights per
timescale beside Shahid 2017's tables (k = 6, and k = 5, 11), each LWA against every Adam it
combines, a step-size heatmap, and every kind against Adam tuned on separate instances.

The fixed step size η is a hyperparameter of the method: it is Adam's learning rate tuned on
the tuning instances of the training MLP, never chosen on evaluation instances. MNIST is the
offline ``mnist_5k`` at 14x14.
"""
from __future__ import annotations

import dataclasses

import jax
import numpy as np

from lopt.bench.suite import Suite, protocol_line
from lopt.evaluation import evaluate_rule, plots, tune_learning_rate
from lopt.evaluation.protocol import EVAL_SEED, SUITE_LR_GRID, TUNE_SEED
from lopt.evaluation.tables import comparison_table
from lopt.outer import TBPTT
from lopt.rules import adam, multiscale_adam
from lopt.rules.multiscale_adam import lwa_weights
from lopt.tasks.mlp import mlp_family

DATA = "mnist_5k_14"
K6 = (0.99, 0.9, 0.8, 0.7, 0.6, 0.5)
K5 = (0.99, 0.9, 0.8, 0.7, 0.6)
K11 = (0.99, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.5)
# Shahid 2017's learned weights: k = 6 for LWA_a, LWA_b, LWA_c; k = 5 and k = 11 (one column).
PAPER_K6 = {"lwa_a": (0.75668, 0.06197, 0.68091, -1.21117, -0.47439, 1.18599),
            "lwa_b": (0.66044, 0.00366, 0.00065, 0.00064, 0.00077, 0.33386),
            "lwa_c": (0.24911, -0.08944, -0.09293, 0.00168, 0.07846, 0.15519)}
PAPER_K5 = (0.60268, 0.00327, 0.00654, 0.00760, 0.37990)
# The slide lists .7 before .75; the weights follow the slide's row order.
PAPER_K11 = (0.66264, 0.00295, 0.00018, 0.00256, 0.00493, 0.00073, 0.00608, 0.00615, 0.00074,
             0.00732, 0.29241)


@dataclasses.dataclass(frozen=True)
class Size:
    kinds: tuple
    other_k: bool
    meta_steps: int
    meta_tasks: int
    truncation: int
    eval_tasks: int
    tune_tasks: int
    eval_steps: int
    eta_factors: tuple


SIZES = {
    "tiny": Size(("lwa_a",), False, 2, 2, 5, 2, 2, 5, (1.0,)),
    "quick": Size(("lwa_a", "lwa_b", "rnn_a"), False, 15, 8, 10, 8, 4, 100, (0.3, 1.0, 3.0)),
    "full": Size(("lwa_a", "lwa_b", "lwa_c", "mlp", "rnn_a", "rnn_b"), True, 40, 16, 20, 32,
                 16, 100, (0.1, 1.0, 10.0)),
}


def run(out: str, quick: bool = False, command: str = "lopt bench multiscale",
        progress: bool = True) -> str:
    sz = SIZES["quick" if quick else "full"]
    extra = [("lwa_b", K5), ("lwa_b", K11)] if sz.other_k else []
    suite = Suite("multiscale", out, sz, command, len(sz.kinds) + len(extra) + 4, progress)
    family = mlp_family(DATA, (20,), "sigmoid")
    eta = suite.cached("eta", lambda: tune_learning_rate(
        adam, family, jax.random.PRNGKey(TUNE_SEED), num_tasks=sz.tune_tasks,
        num_steps=sz.eval_steps, grid=SUITE_LR_GRID).learning_rate)
    estimator = TBPTT(num_runs=sz.meta_tasks, truncation=sz.truncation, horizon=100)
    learned, weights = {}, {}
    for kind, betas in [(kind, K6) for kind in sz.kinds] + extra:
        key = kind if betas == K6 else f"{kind}_k{len(betas)}"
        rule = multiscale_adam(kind, betas=betas, learning_rate=eta)
        theta = suite.meta_train(key, rule, family, estimator, steps=sz.meta_steps)
        learned[key] = (rule, theta)
        if kind.startswith("lwa"):
            weights[key] = np.asarray(lwa_weights(kind, theta["a"])).tolist()
    protocol = protocol_line(sz.eval_tasks, sz.tune_tasks, sz.eval_steps)
    lwa6 = [k for k in ("lwa_a", "lwa_b", "lwa_c") if k in weights]
    lines = ["| Adam β1 | " + " | ".join(f"lopt {k} | paper {k}" for k in lwa6) + " |",
             "|---" * (1 + 2 * len(lwa6)) + "|"]
    for j, b in enumerate(K6):
        lines.append(f"| {b} | " + " | ".join(f"{weights[k][j]:.5f} | {PAPER_K6[k][j]:.5f}"
                                             for k in lwa6) + " |")
    text = ("Weights w_j of Δx = −η Σ_j w_j Adam_{β_j}(g), meta-trained with "
            f"η = {eta:.3g} "
            "(Adam's lr tuned on the tuning instances). LWA_a: Σw = 1; LWA_b: w > 0, Σw = 1; "
            "LWA_c: free.\n\n" + "\n".join(lines) + "\n")
    for key, betas, paper in (("lwa_b_k5", K5, PAPER_K5), ("lwa_b_k11", K11, PAPER_K11)):
        if key in weights:
            text += (f"\nk = {len(betas)} (LWA_b):\n\n| Adam β1 | lopt | paper |\n|---|---|---|\n"
                     + "\n".join(f"| {b} | {w:.5f} | {p:.5f} |"
                                 for b, w, p in zip(betas, weights[key], paper)) + "\n")
    suite.section("Learned weights per timescale", text)
    # Each LWA against every Adam it combines, all at the same η (Shahid 2017's comparison).
    inputs = {f"adam β1={b}": (adam(eta, b1=b), {}) for b in K6}
    vs_inputs = suite.compare("eval_vs_inputs", {**{k: learned[k] for k in lwa6}, **inputs}, {},
                              family, num_tasks=sz.eval_tasks, tune_tasks=sz.tune_tasks,
                              num_steps=sz.eval_steps)
    for s in vs_inputs:
        if s["name"] in inputs:
            s["learning_rate"] = eta  # fixed at η, not learned: the table says so

    suite.section(f"LWA against each of its input Adams (η = {eta:.3g} for all)",
                  comparison_table(vs_inputs, sz.eval_tasks, sz.eval_steps, tuning_note=(
                      f"Every row runs at η = {eta:.3g}, Adam's learning rate tuned on the "
                      "tuning instances; nothing is tuned on these instances.")))
    all_kinds = suite.compare("eval_kinds", learned, {"adam": adam}, family,
                              num_tasks=sz.eval_tasks, tune_tasks=sz.tune_tasks,
                              num_steps=sz.eval_steps, test_metrics=True)
    suite.section("Every kind against Adam tuned on separate instances", protocol + "\n\n"
                  + comparison_table(all_kinds, sz.eval_tasks, sz.eval_steps, sz.tune_tasks))
    plots.curves_with_spread(all_kinds, suite.figure("kinds.png"),
                             f"Multiscale Adam kinds on the {DATA} MLP (evaluation instances)")
    heat = _heatmap(suite, learned, eta, family, sz)
    suite.payload.update({"eta": eta, "weights": weights, "paper_k6": PAPER_K6,
                          "vs_inputs": vs_inputs, "kinds": all_kinds, "heatmap": heat})
    return suite.finish("Multiscale Adam (Shahid 2017, second part)",
                        "Shahid 2017 finds the most recent and most distant timescales weighted "
                        "highest, LWA better than each of its input Adams, normalization "
                        "essential, MLP no better than LWA and RNN_b best.")


def _heatmap(suite, learned, eta, family, sz):
    """Final loss of each rule (meta-trained at η) and of Adam, run at η x each factor."""

    def compute():
        rows = {}
        # The LWAs and RNN_b (Shahid 2017's heatmaps); k = 5, 11 and MLP/RNN_a are left out.
        names = ["adam"] + [k for k in ("lwa_a", "lwa_b", "lwa_c", "rnn_b") if k in learned]
        for name in names:
            row = []
            for f in sz.eta_factors:
                if name == "adam":
                    rule, theta = adam(eta * f), {}
                else:
                    base, theta = learned[name]
                    rule = multiscale_adam(**{**base.config, "learning_rate": eta * f})
                r = evaluate_rule(rule, theta, family, jax.random.PRNGKey(EVAL_SEED),
                                  num_tasks=sz.eval_tasks, num_steps=sz.eval_steps)
                row.append(None if r.diverged.any() else float(np.mean(r.final)))
            rows[name] = row
        return rows

    rows = suite.cached("heatmap", compute)
    grid = np.array([[np.inf if v is None else v for v in row] for row in rows.values()])
    plots.heatmap(grid, list(rows), [f"{eta * f:.2g}" for f in sz.eta_factors],
                  suite.figure("eta_heatmap.png"), "final loss vs step size η",
                  "mean final loss")
    suite.section("Step-size heatmap", "Mean final loss on the evaluation instances when each "
                  "rule (weights meta-trained at the tuned η) runs at another η; `div.` marks a "
                  "diverged run.\n\n| rule | " + " | ".join(f"η = {eta * f:.2g}"
                                                           for f in sz.eta_factors) + " |\n"
                  + "|---" * (len(sz.eta_factors) + 1) + "|\n"
                  + "\n".join(f"| {n} | " + " | ".join("div." if v is None else f"{v:.4g}"
                                                        for v in row) + " |"
                              for n, row in rows.items()) + "\n")
    return rows
