"""``lopt bench hyperadam``: Wang, Sun & Xu 2019 (Wang, Sun, Xu, "HyperAdam") — HyperAdam, the L2L
LSTM ("DMoptimizer") and RNNprop each meta-trained on a 1-hidden-layer MLP on MNIST with T = 100,
then Table 1 (activations), Table 2 (LSTM sequence tasks), Table 3 (CNNs over a long horizon), depth
2–10 and a longer horizon (T = 2000), against Adam tuned on separate instances.

MNIST is the offline ``mnist_5k`` at 14x14; Table 3's 10,000 steps are scaled to ``long_steps``
(one CNN run of 10k steps per rule and instance does not fit the CPU budget); the table gives
top-1 test accuracy (the paper's top-2 is not computed).
"""
from __future__ import annotations

import dataclasses

from lopt.bench.suite import Suite, protocol_line
from lopt.evaluation import plots, tables
from lopt.outer import TBPTT
from lopt.rules import adam, make_rule
from lopt.tasks import make_family
from lopt.tasks.mlp import mlp_family

DATA = "mnist_5k_14"
LEARNED = (("DMoptimizer", "l2l_lstm", 3e-3), ("RNNprop", "rnnprop", 3e-3),
           ("HyperAdam", "hyperadam", 1e-3))
COLUMNS = ("adam", "DMoptimizer", "RNNprop", "HyperAdam")
TABLE1 = ("sigmoid", "relu", "elu", "tanh")
TABLE2 = ("sine_lstm", "sine_lstm_small_noise", "sine_lstm_2layer")
TABLE3 = ("mnist_conv_fc", "digits_conv")
# The paper's numbers (Wang, Sun & Xu 2019, Tables 1-3), in the columns' order.
PAPER = {"sigmoid": (0.35, 0.38, 0.34, 0.33), "relu": (0.32, 1.42, 0.31, 0.29),
         "elu": (0.31, 2.02, 0.31, 0.28), "tanh": (0.34, 0.83, 0.33, 0.36),
         "sine_lstm": (0.65, 3.10, 0.49, 0.42), "sine_lstm_small_noise": (0.39, 3.06, 0.32, 0.19),
         "sine_lstm_2layer": (0.51, 2.05, 0.27, 0.26)}


@dataclasses.dataclass(frozen=True)
class Size:
    learned: tuple
    meta_steps: int
    meta_tasks: int
    truncation: int
    eval_tasks: int
    tune_tasks: int
    activations: tuple
    sequence: tuple
    sequence_tasks: int
    cnns: tuple
    long_steps: int
    depths: tuple
    horizon_steps: int
    long_tasks: int
    eval_steps: int


SIZES = {
    "tiny": Size(("HyperAdam",), 2, 2, 5, 2, 2, ("sigmoid",), (), 2, (), 10, (2,), 8, 2, 5),
    "quick": Size(("RNNprop", "HyperAdam"), 15, 8, 10, 8, 4, ("sigmoid", "relu"), (), 2,
                  ("digits_conv",), 100, (3,), 150, 4, 100),
    "full": Size(("DMoptimizer", "RNNprop", "HyperAdam"), 60, 16, 20, 32, 8, TABLE1, TABLE2,
                 4, TABLE3[:1], 300, tuple(range(2, 11)), 2000, 8, 100),
}


def run(out: str, quick: bool = False, command: str = "lopt bench hyperadam",
        progress: bool = True) -> str:
    sz = SIZES["quick" if quick else "full"]
    stages = (len(sz.learned) + len(sz.activations) + len(sz.sequence) + len(sz.cnns)
              + len(sz.depths) + 1)
    suite = Suite("hyperadam", out, sz, command, stages, progress)
    estimator = TBPTT(num_runs=sz.meta_tasks, truncation=sz.truncation, horizon=100)
    train_family = mlp_family(DATA, (20,), "sigmoid")
    learned = {}
    for label, name, meta_lr in LEARNED:
        if label in sz.learned:
            rule = make_rule(name)
            learned[label] = (rule, suite.meta_train(name, rule, train_family, estimator,
                                                     steps=sz.meta_steps, meta_lr=meta_lr))
    baselines = {"adam": adam}
    columns = [c for c in COLUMNS if c == "adam" or c in learned]

    def table(rows, steps, tasks, test=False):
        return {label: suite.compare(f"eval_{family.name}_{steps}", learned, baselines, family,
                                     num_tasks=tasks, tune_tasks=min(sz.tune_tasks, tasks),
                                     num_steps=steps, test_metrics=test)
                for label, family in rows}

    t1 = table([(a, mlp_family(DATA, (20,), a)) for a in sz.activations], sz.eval_steps,
               sz.eval_tasks,
               test=True)
    suite.section(f"Table 1: the MLP with different activation functions, {sz.eval_steps} steps",
                  f"{protocol_line(sz.eval_tasks, sz.tune_tasks, sz.eval_steps)} Final minibatch "
                  "training loss, mean ± standard error; the paper's row (Adam, DMoptimizer, "
                  "RNNprop, HyperAdam) follows each of ours.\n\n" + _with_paper(t1, columns)
                  + "\nTest accuracy after the last step:\n\n"
                  + tables.field_table(t1, columns, "test_accuracy", ".3f"))
    plots.curves_with_spread(t1[sz.activations[0]], suite.figure("table1_curves.png"),
                             f"{DATA} MLP, {sz.activations[0]} (meta-training architecture)")
    payload = {"table1": t1}
    if sz.cnns:
        t3 = table([(n, make_family(n)) for n in sz.cnns], sz.long_steps, sz.long_tasks,
                   test=True)
        suite.section(f"Table 3: CNNs on MNIST over {sz.long_steps} steps (paper: 10,000)",
                      protocol_line(sz.long_tasks, min(sz.tune_tasks, sz.long_tasks),
                                    sz.long_steps)
                      + " Final training loss:\n\n" + tables.matrix_table(t3, columns)
                      + "\nTest loss:\n\n" + tables.field_table(t3, columns, "test_loss")
                      + "\nTop-1 test accuracy:\n\n"
                      + tables.field_table(t3, columns, "test_accuracy", ".4f"))
        for n in sz.cnns:
            plots.curves_with_spread(t3[n], suite.figure(f"table3_{n}.png"),
                                     f"{n}, {sz.long_steps} steps")
        payload["table3"] = t3
    depth = table([(f"{d} hidden layers", mlp_family(DATA, (20,) * d, "relu"))
                   for d in sz.depths], sz.eval_steps, sz.eval_tasks)
    suite.section(f"Generalization to depth (ReLU MLPs of 20 units a layer), {sz.eval_steps} steps",
                  protocol_line(sz.eval_tasks, sz.tune_tasks, sz.eval_steps) + "\n\n"
                  + tables.matrix_table(depth, columns, first="depth"))
    long = table([("MLP, 20 sigmoid", train_family)], sz.horizon_steps, sz.long_tasks, test=True)
    suite.section(f"Longer horizon: the meta-training MLP for T = {sz.horizon_steps} steps",
                  protocol_line(sz.long_tasks, min(sz.tune_tasks, sz.long_tasks),
                                sz.horizon_steps) + " (meta-trained with T = 100).\n\n"
                  + tables.matrix_table(long, columns)
                  + "\nTest accuracy:\n\n" + tables.field_table(long, columns, "test_accuracy",
                                                              ".3f"))
    plots.curves_with_spread(long["MLP, 20 sigmoid"], suite.figure("long_horizon.png"),
                             f"{DATA} MLP over {sz.horizon_steps} steps (trained on T = 100)")
    payload.update({"depth": depth, "long_horizon": long, "paper": PAPER})
    if sz.sequence:
        t2 = table([(n, make_family(n)) for n in sz.sequence], sz.eval_steps, sz.sequence_tasks)
        n = sz.sequence_tasks
        suite.section(f"Table 2: LSTM sequence prediction, {sz.eval_steps} steps",
                      f"{protocol_line(n, min(sz.tune_tasks, n), sz.eval_steps)} Run last, and "
                      "on few instances: on 2 CPU cores unrolls of recurrent tasks over 8 or "
                      "more runs can stall XLA (docs/tasks.md).\n\n" + _with_paper(t2, columns))
        payload["table2"] = t2
    suite.payload.update(payload)
    return suite.finish("HyperAdam: a learnable task-adaptive Adam (Wang, Sun & Xu 2019)",
                        "Each learned rule is meta-trained on the same 1-hidden-layer sigmoid MLP "
                        f"on {DATA} with T = 100 (TBPTT truncation {sz.truncation}, "
                        f"{sz.meta_tasks} runs, {sz.meta_steps} outer steps); every table tests "
                        "it on instances and architectures it never saw.")


def _with_paper(rows: dict, columns) -> str:
    table = tables.matrix_table(rows, columns).rstrip("\n").split("\n")
    out = table[:2]
    for line, label in zip(table[2:], rows):
        out.append(line)
        if label in PAPER:
            paper = dict(zip(COLUMNS, PAPER[label]))
            out.append(f"| paper: {label} | " + " | ".join(f"{paper[c]:.2f}" for c in columns)
                       + " |")
    return "\n".join(out) + "\n"
