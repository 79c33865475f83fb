"""``lopt bench history``: Shahid 2017, learned optimizers on normalized inputs —
k-timesteps and k-momentums rules meta-trained on the MNIST MLP, against Adam and RMSProp
tuned on separate instances, and the learned Δx for k = 5 on Shahid 2017's ±1 gradient patterns.

MNIST is the offline ``mnist_5k`` at 14x14; Shahid 2017 meta-trains for 200k iterations, this
suite for ``meta_steps``. η_min is the rule's default 1e-3 for every k (Shahid 2017 tunes it).
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from lopt.bench.suite import Suite, protocol_line
from lopt.evaluation import plots, tables
from lopt.evaluation.tables import comparison_table
from lopt.outer import TBPTT
from lopt.rules import BASELINES, normalized_history
from lopt.rules.history import learned_delta
from lopt.tasks.mlp import mlp_family

DATA = "mnist_5k_14"
# Shahid 2017's table "Learned Δx, for k = 5": gradients ∇L^{t−4} … ∇L^t and the learned Δx.
PATTERNS = (((1.0, 1.0, 1.0, 1.0, 1.0), 0.999999), ((1.0, 1.0, 1.0, 1.0, -1.0), 0.999984),
            ((1.0, 1.0, 1.0, -1.0, -1.0), 0.99128), ((1.0, 1.0, -1.0, -1.0, -1.0), -0.99011),
            ((1.0, -1.0, -1.0, -1.0, -1.0), -0.99978), ((-1.0, -1.0, -1.0, -1.0, -1.0), -0.99999),
            ((-0.1, -0.1, -0.25, -0.25, 1.0), 0.84402), ((-0.1, -0.25, 0.0, 0.25, 1.0), 0.41817))


@dataclasses.dataclass(frozen=True)
class Size:
    variants: tuple  # (label, variant, k)
    meta_steps: int
    meta_tasks: int
    truncation: int
    eval_tasks: int
    tune_tasks: int
    eval_steps: int
    baselines: tuple


VARIANTS = (("5 timesteps", "timesteps", 5), ("10 timesteps", "timesteps", 10),
            ("5 momentums", "momentums", 5))
SIZES = {
    "tiny": Size(VARIANTS[:1], 2, 2, 5, 2, 2, 5, ("adam",)),
    "quick": Size(VARIANTS[::2], 15, 8, 10, 8, 4, 100, ("adam", "rmsprop")),
    "full": Size(VARIANTS, 60, 16, 20, 32, 16, 100, ("adam", "rmsprop")),
}


def run(out: str, quick: bool = False, command: str = "lopt bench history",
        progress: bool = True) -> str:
    sz = SIZES["quick" if quick else "full"]
    suite = Suite("history", out, sz, command, len(sz.variants) + 2, progress)
    family = mlp_family(DATA, (20,), "sigmoid")
    estimator = TBPTT(num_runs=sz.meta_tasks, truncation=sz.truncation, horizon=100)
    learned = {}
    for label, variant, k in sz.variants:
        rule = normalized_history(k=k, variant=variant)
        learned[label] = (rule, suite.meta_train(f"{variant}_{k}", rule, family, estimator,
                                                 steps=sz.meta_steps))
    baselines = {b: BASELINES[b][0] for b in sz.baselines}
    results = suite.compare("eval_mnist", learned, baselines, family, num_tasks=sz.eval_tasks,
                            tune_tasks=sz.tune_tasks, num_steps=sz.eval_steps, test_metrics=True)

    names = [s["name"] for s in results]

    suite.section("k timesteps and k momentums vs Adam and RMSProp",
                  f"Meta-trained on the {DATA} MLP (20 sigmoid units; TBPTT truncation "
                  f"{sz.truncation}, horizon 100, {sz.meta_tasks} runs, {sz.meta_steps} outer "
                  f"steps). {protocol_line(sz.eval_tasks, sz.tune_tasks, sz.eval_steps)}\n\n"
                  + comparison_table(results, sz.eval_tasks, sz.eval_steps, sz.tune_tasks)
                  + "\nLoss on the whole test split after the last step:\n\n"
                  + tables.field_table({DATA: results}, names, "test_loss")
                  + "\nTest accuracy:\n\n"
                  + tables.field_table({DATA: results}, names, "test_accuracy", ".3f"))
    plots.curves_with_spread(results, suite.figure("curves.png"),
                             f"normalized-history rules on the {DATA} MLP (evaluation instances)")
    payload = {"results": results}
    k5 = next((label for label, variant, k in sz.variants if (variant, k) == ("timesteps", 5)),
              None)
    if k5 is not None:
        theta = learned[k5][1]
        rows = [(p, paper, float(learned_delta(theta, jnp.asarray(p)))) for p, paper in PATTERNS]
        lines = ["| ∇L^{t−4} | ∇L^{t−3} | ∇L^{t−2} | ∇L^{t−1} | ∇L^t | lopt Δx^t "
                 "| paper Δx^t |",
                 "|---|---|---|---|---|---|---|"]
        for p, paper, ours in rows:
            lines.append("| " + " | ".join(f"{v:g}" for v in p) + f" | {ours:.5f} | {paper:g} |")
        suite.section("Learned Δx for k = 5 on Shahid 2017's gradient patterns",
                      "Δx^t is the network's output for a coordinate whose last five gradients "
                      "are the pattern (x^{t+1} = x_ref + Δx · (x_diff + η_min)). In lopt a "
                      "positive gradient should give a negative Δx (descent); Shahid 2017's table "
                      "has the opposite sign, so it feeds the negative gradient: compare "
                      "magnitudes and the sign pattern, mirrored.\n\n" + "\n".join(lines) + "\n")
        payload["delta_table"] = [{"pattern": p, "paper": paper, "lopt": ours}
                                  for p, paper, ours in rows]
    suite.payload.update(payload)
    return suite.finish("Learned optimizers on normalized inputs (Shahid 2017, first part)",
                        "Shahid 2017 finds k timesteps no better than Adam even at k = 100, and k "
                        "momentums (x_ref = x_t) better than RMSProp and close to Adam.")
