"""``lopt bench l2l``: Andrychowicz et al. 2016 — the coordinatewise LSTM optimizer
on 10x10 quadratics and on an MNIST MLP (20 sigmoid units), its generalization rows (40 hidden
units, 2 hidden layers, ReLU) and the systematic width x depth sweep, against SGD, NAG, RMSProp
and Adam (the paper's baselines) tuned on separate instances.

MNIST is the real offline ``mnist_5k`` digits at 14x14 (``mnist_5k_14``): 5,000 digits instead
of 60,000 and a quarter of the pixels, so one meta-training step fits a 2-core CPU.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from lopt.bench.suite import Suite, protocol_line
from lopt.evaluation import plots, tables
from lopt.evaluation.tables import comparison_table
from lopt.outer import TBPTT
from lopt.rules import BASELINES as ALL
from lopt.rules import l2l_lstm
from lopt.tasks import make_family
from lopt.tasks.mlp import mlp_family

BASELINES = ("sgd", "nesterov", "rmsprop", "adam")
DATA = "mnist_5k_14"


@dataclasses.dataclass(frozen=True)
class Size:
    quad_steps: int
    quad_tasks: int
    mnist_steps: int
    mnist_tasks: int
    truncation: int
    horizon: int
    eval_tasks: int
    tune_tasks: int
    search_trials: int
    rows: tuple  # generalization rows: (label, hidden, activation, eval steps)
    widths: tuple
    depths: tuple
    eval_steps: int
    baselines: tuple


ROWS = (("MNIST, 20 sigmoid (meta-training task)", (20,), "sigmoid", 100),
        ("MNIST, 200 steps", (20,), "sigmoid", 200),
        ("40 hidden units", (40,), "sigmoid", 100),
        ("2 hidden layers (20 + 20)", (20, 20), "sigmoid", 100),
        ("ReLU", (20,), "relu", 100))

SIZES = {
    "tiny": Size(2, 4, 2, 2, 5, 10, 2, 2, 0, (("MNIST, 20 sigmoid", (20,), "sigmoid", 5),),
                 (20,), (1,), 5, ("adam",)),
    "quick": Size(40, 32, 10, 8, 10, 50, 8, 4, 4, ROWS[:3:2], (10, 40), (1,), 100,
                  ("sgd", "adam")),
    "full": Size(600, 128, 60, 16, 20, 100, 32, 16, 8, ROWS, (5, 20, 80), (1, 3), 100,
                 BASELINES),
}


def run(out: str, quick: bool = False, command: str = "lopt bench l2l",
        progress: bool = True) -> str:
    sz = SIZES["quick" if quick else "full"]
    sweep = [(w, d) for d in sz.depths for w in sz.widths]
    suite = Suite("l2l", out, sz, command, 4 + len(sz.rows) + len(sweep), progress)
    baselines = {b: ALL[b][0] for b in sz.baselines}
    rule = l2l_lstm()

    def estimator(tasks):
        return TBPTT(num_runs=tasks, truncation=sz.truncation, horizon=sz.horizon)

    quad = make_family("quadratic")
    theta_q = suite.meta_train("lstm_quadratic", rule, quad, estimator(sz.quad_tasks),
                               steps=sz.quad_steps)
    quad_results = suite.compare("eval_quadratic", {"LSTM": (rule, theta_q)}, baselines, quad,
                                 num_tasks=sz.eval_tasks, tune_tasks=sz.tune_tasks,
                                 num_steps=sz.eval_steps, search_trials=sz.search_trials)
    mnist = mlp_family(DATA, (20,), "sigmoid")
    theta_m = suite.meta_train("lstm_mnist", rule, mnist, estimator(sz.mnist_tasks),
                               steps=sz.mnist_steps)

    suite.section("Quadratic functions, 10x10 (Andrychowicz et al. 2016, first experiment)",
                  f"LSTM meta-trained for {sz.quad_steps} outer steps on 10x10 quadratics "
                  f"‖Wθ − y‖², TBPTT truncation {sz.truncation}, horizon {sz.horizon}.\n\n"
                  + comparison_table(quad_results, sz.eval_tasks, sz.eval_steps, sz.tune_tasks))
    plots.curves_with_spread(quad_results, suite.figure("quadratic.png"),
                             "L2L: 10x10 quadratics (evaluation instances)")
    rows = {}
    for label, hidden, activation, steps in sz.rows:
        family = mlp_family(DATA, hidden, activation)
        rows[label] = suite.compare(f"eval_{family.name}_{steps}", {"LSTM": (rule, theta_m)},
                                    baselines, family, num_tasks=sz.eval_tasks,
                                    tune_tasks=sz.tune_tasks, num_steps=steps,
                                    search_trials=sz.search_trials, test_metrics=True)
    columns = [s["name"] for s in next(iter(rows.values()))]
    first = next(iter(rows))
    plots.curves_with_spread(rows[first], suite.figure("mnist.png"),
                             f"L2L: {DATA} MLP, 20 sigmoid units (evaluation instances)")
    suite.section(
        "MNIST MLP and the generalization rows (Andrychowicz et al. 2016, second experiment)",
        f"{protocol_line(sz.eval_tasks, sz.tune_tasks, sz.eval_steps)} LSTM meta-trained for "
        f"{sz.mnist_steps} outer steps on the {DATA} MLP with 20 sigmoid units (TBPTT truncation "
        f"{sz.truncation}, horizon {sz.horizon}, {sz.mnist_tasks} runs, minibatch 128); every "
        "other row tests that same LSTM on an architecture it never saw. Final minibatch "
        "training loss, mean ± standard error:\n\n" + tables.matrix_table(rows, columns)
        + "\nLoss on the whole test split after the last step:\n\n"
        + tables.field_table(rows, columns, "test_loss")
        + "\nTest accuracy:\n\n" + tables.field_table(rows, columns, "test_accuracy", ".3f"))
    grid = np.full((len(sz.depths), len(sz.widths)), np.nan)
    cells = {}
    for w, d in sweep:
        family = mlp_family(DATA, (w,) * d, "sigmoid")
        summaries = suite.compare(f"sweep_{family.name}", {"LSTM": (rule, theta_m)},
                                  {"adam": baselines["adam"]}, family, num_tasks=sz.eval_tasks,
                                  tune_tasks=sz.tune_tasks, num_steps=sz.eval_steps)
        cells[f"{d}x{w}"] = summaries
        lstm, adam = summaries
        if lstm["diverged"] == 0 and adam["diverged"] == 0:
            grid[sz.depths.index(d), sz.widths.index(w)] = lstm["final_mean"] / adam["final_mean"]
        elif lstm["diverged"]:
            grid[sz.depths.index(d), sz.widths.index(w)] = np.inf
    plots.heatmap(grid, [f"{d} layer(s)" for d in sz.depths], [f"{w} units" for w in sz.widths],
                  suite.figure("sweep.png"), "LSTM / tuned Adam final loss (<1: LSTM better)",
                  "ratio of mean final losses")
    suite.section("Systematic width x depth sweep (Andrychowicz et al. 2016, generalization)",
                  "The MNIST LSTM against Adam tuned per architecture (sigmoid MLPs, "
                  f"{sz.eval_steps} "
                  "steps); "
                  "each cell is a depth x width.\n\n"
                  + tables.matrix_table(cells, ["LSTM", "adam"], first="layers x width"))
    suite.payload.update({"quadratic": quad_results, "mnist_rows": rows, "sweep": cells,
                          "sweep_ratio": grid.tolist()})
    return suite.finish("Learning to learn by gradient descent by gradient descent (Andrychowicz "
                        "et al. 2016)",
                        "The slides give no numbers, only curves: the LSTM beats SGD, NAG, RMSProp "
                        "and Adam on quadratics and MNIST, generalizes to 40 units, 2 layers and "
                        "200 steps, and fails on ReLU. Set the tables below beside that.")
