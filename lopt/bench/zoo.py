"""``lopt bench zoo``: every learned rule meta-trained on one split of task families and tested
on families it never saw, against tuned hand-designed baselines.

Meta-training: the families of ``TRAIN`` (a mixture, equal runs each). Meta-test: evaluation
instances of the training families, and the families of ``TEST``, never seen in meta-training.
Losses are normalized per family (Metz et al. 2019: initial loss 1, tuned Adam's best mean loss 0,
from Adam tuned on the normalization's own tuning instances); across test families the suite reports
the IQM of the final normalized loss with a stratified-bootstrap 95% interval and performance
profiles (``lopt.evaluation.stats``), the speedup over tuned Adam
(``lopt.evaluation.metrics.speedup``), the per-step wall time relative to ``optax.adam`` and the
optimizer state per parameter.
"""
from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np

from lopt.bench.suite import Suite, finals, mean_auc, protocol_line
from lopt.evaluation import loss_curves, plots, stats, tables
from lopt.evaluation.metrics import format_speedup, speedup, state_bytes_per_parameter
from lopt.evaluation.normalization import adam_reference
from lopt.outer import TBPTT
from lopt.rules import BASELINES, adam, make_rule
from lopt.tasks import Mixture, make_family, normalized

TRAIN = ("quadratic", "digits_mlp")
TEST = ("quadratic_tanh", "mnist_mlp", "mnist1d_mlp", "digits_conv", "breast_cancer_logistic",
        "digits_autoencoder")
RULES = ("l2l_lstm", "rnnprop", "hyperadam", "multiscale_adam", "normalized_history",
         "per_parameter_mlp", "hierarchical")
# HyperAdam's meta-training on digits diverged at 3e-3 (in the first zoo run); 1e-3 is stable.
META_LR = {"hyperadam": 1e-3}


@dataclasses.dataclass(frozen=True)
class Size:
    train: tuple
    rules: tuple
    test: tuple
    baselines: tuple
    search_trials: int
    meta_steps: int
    meta_tasks: int
    truncation: int
    horizon: int
    eval_tasks: int
    tune_tasks: int
    eval_steps: int
    reference_tasks: int
    # Evaluated in a stage of their own, so adding baselines keeps the finished comparisons.
    more_baselines: tuple = ()


SIZES = {
    "tiny": Size(("quadratic",), ("rnnprop",), ("iris_logistic",), ("adam",), 2, 2, 4, 5, 10, 2,
                 2, 10, 2, ("momentum",)),
    "quick": Size(TRAIN, ("rnnprop", "multiscale_adam"), ("iris_logistic", "mnist1d_mlp"),
                  ("adam",),
                  4, 20, 16, 10, 50, 8, 4, 50, 4),
    # Misra's nine optimizers and the modern ones (AdamW, NAdamW, Lion, schedule-free
    # AdamW, Muon), every one tuned per family.
    "full": Size(TRAIN, RULES, TEST, ("adam", "sgd", "rmsprop", "adamw", "lion",
                                      "schedule_free_adamw", "muon"),
                 16, 250, 32, 20, 100, 32, 16, 100, 8,
                 ("momentum", "nesterov", "rprop", "adagrad", "adadelta", "adamax", "nadamw")),
}


def run(out: str, quick: bool = False, command: str = "lopt bench zoo",
        progress: bool = True) -> str:
    sz = SIZES["quick" if quick else "full"]
    train_names, test = tuple(sz.train), tuple(sz.test)
    stages = len(sz.rules) + (2 + bool(sz.more_baselines)) * (len(train_names) + len(test)) + 1
    suite = Suite("zoo", out, sz, command, stages, progress)
    refs = {name: adam_reference(make_family(name), num_steps=sz.eval_steps,
                                 num_tasks=sz.reference_tasks) for name in train_names + test}
    families = {name: normalized(make_family(name), refs[name]) for name in train_names + test}
    train_family = Mixture(tuple(families[n] for n in train_names))
    # Multiscale Adam's fixed step size is a hyperparameter: the geometric mean of Adam's
    # tuned lr on the training families (their tuning instances), never on test families.
    eta = float(np.exp(np.mean([np.log(refs[n].learning_rate) for n in train_names])))
    estimator = TBPTT(num_runs=sz.meta_tasks, truncation=sz.truncation, horizon=sz.horizon)
    learned = {}
    for name in sz.rules:
        rule = make_rule(name, **({"learning_rate": eta} if name == "multiscale_adam" else {}))
        theta = suite.meta_train(name, rule, train_family, estimator,
                                 steps=sz.meta_steps, meta_lr=META_LR.get(name, 3e-3))
        learned[name] = (rule, theta)
    baselines = {b: BASELINES[b][0] for b in sz.baselines}
    results = {}
    for name in train_names + test:
        results[name] = suite.compare(f"eval_{name}", learned, baselines, families[name],
                                      num_tasks=sz.eval_tasks, tune_tasks=sz.tune_tasks,
                                      num_steps=sz.eval_steps, search_trials=sz.search_trials)
        if sz.more_baselines:
            results[name] = results[name] + suite.compare(
                f"more_{name}", {}, {b: BASELINES[b][0] for b in sz.more_baselines},
                families[name], num_tasks=sz.eval_tasks, tune_tasks=sz.tune_tasks,
                num_steps=sz.eval_steps)
    columns = [s["name"] for s in results[test[0]]]
    protocol = protocol_line(sz.eval_tasks, sz.tune_tasks, sz.eval_steps)
    suite.section("Held-out instances of the meta-training families",
                  f"{protocol} Final normalized loss (0: tuned Adam's best on the normalization's "
                  "tuning instances, 1: the initial loss), mean ± standard error.\n\n"
                  + tables.matrix_table({n: results[n] for n in train_names}, columns,
                                       transpose=True))
    suite.section("Meta-test families (never seen in meta-training)",
                  f"{protocol} Final normalized loss, mean ± standard error.\n\n"
                  + tables.matrix_table({n: results[n] for n in test}, columns, transpose=True))
    for summaries in results.values():
        for s in summaries:
            s["auc_mean"] = mean_auc(s)
    suite.section("Area under the curve",
                  "Mean normalized loss over steps 1 … T (area under the curve, "
                  "`lopt.evaluation.metrics.area_under_curve`), mean over the runs that did not "
                  "diverge: "
                  "low when a rule is fast early as well as good at the end.\n\n"
                  + tables.field_table(results, columns, "auc_mean", ".3g", transpose=True))
    _aggregate(suite, results, test, columns)
    _speed(suite, learned, results, test)
    for name in test:
        plots.curves_with_spread(results[name], suite.figure(f"curves_{name}.png"),
                                 f"zoo on {name} (meta-test)", "normalized loss")
    suite.payload.update({"train": train_names, "test": test, "multiscale_eta": eta,
                          "references": {n: dataclasses.asdict(r) for n, r in refs.items()},
                          "results": results})
    return suite.finish(
        "Learned-rule zoo: meta-train on one split, test on unseen families",
        f"Every learned rule meta-trained with TBPTT (truncation {sz.truncation}, horizon "
        f"{sz.horizon}, {sz.meta_tasks} runs, {sz.meta_steps} outer steps) on the normalized "
        f"mixture {' + '.join(train_names)}; tested on evaluation instances of those and on "
        f"{', '.join(test)}. Baselines' learning rates are tuned per family on a log grid; "
        f"`adam random search` draws lr, β1, β2, ε and weight decay {sz.search_trials} times.")


def _aggregate(suite: Suite, results: dict, test: tuple, columns: list) -> None:
    scores = {c: stats.scores_matrix([finals(next(s for s in results[t] if s["name"] == c))
                                      for t in test]) for c in columns}
    estimates = stats.iqm_with_ci(scores)
    taus = np.linspace(-0.5, 1.5, 41)
    profile = stats.performance_profile(scores, taus)
    lines = tables.iqm_table(estimates, scores, "IQM of final normalized loss")
    suite.section("Aggregate over the meta-test families",
                  "Interquartile mean over all runs of all meta-test families, 95% stratified-"
                  "bootstrap interval (runs resampled within each family; rliable). A diverged "
                  "run scores +inf, so it is trimmed only while under a quarter of the runs.\n\n"
                  + "\n".join(lines) + "\n")
    plots.interval_bars(estimates, suite.figure("iqm.png"), "zoo on meta-test families",
                        "IQM of final normalized loss (lower is better)")
    plots.profiles(profile, suite.figure("profile.png"), "performance profile, meta-test",
                   "τ (final normalized loss)")
    suite.payload.update({"iqm": estimates, "profile": profile})


def _speed(suite: Suite, learned: dict, results: dict, test: tuple) -> None:
    probe = make_family(test[-1] if "mnist_mlp" not in test else "mnist_mlp")
    key = jax.random.PRNGKey(0)
    params = probe.build(probe.sample(key)).init(key)

    def step_seconds(rule, theta):
        run = jax.jit(lambda th: loss_curves(rule, th, probe, key, num_tasks=8, num_steps=20))
        jax.block_until_ready(run(theta))
        start = time.perf_counter()
        jax.block_until_ready(run(theta))
        return (time.perf_counter() - start) / 20

    def compute():
        base = step_seconds(adam(1e-3), {})
        return {name: {"step_time_vs_adam": step_seconds(rule, theta) / base,
                       "state_bytes_per_param": state_bytes_per_parameter(rule, theta, params)}
                for name, (rule, theta) in learned.items()}

    # Only the timings are cached; speedups are read off the comparisons every run, so they
    # can never disagree with the tables above.
    rows = suite.cached("speed", compute, {"rules": sorted(learned), "probe": probe.name})
    for name, row in rows.items():
        row["speedup"] = [_speedup(_named(results[t], name), _named(results[t], "adam"))
                          for t in test]
    lines = ["| rule | " + " | ".join(f"speedup on {t}" for t in test)
             + " | step time / optax.adam | state bytes / parameter |",
             "|---" * (len(test) + 3) + "|"]
    for name, r in rows.items():
        cells = [format_speedup(s) for s in r["speedup"]]
        lines.append(f"| {name} | " + " | ".join(cells)
                     + f" | {r['step_time_vs_adam']:.2f} | {r['state_bytes_per_param']:.0f} |")
    suite.section("Speedup over tuned Adam, step time and memory",
                  "Speedup: steps tuned Adam's mean curve needs to reach the rule's final mean "
                  "loss, over the rule's steps (VeLO/Celo; `lopt.evaluation.metrics.speedup`); "
                  "`≥ x` "
                  "when Adam never reaches it, 0 when the rule diverged on any run. Step time: "
                  "one vmapped inner step on 8 "
                  f"{probe.name} instances relative to optax.adam's, measured in this run.\n\n"
                  + "\n".join(lines) + "\n")
    suite.payload["speed"] = rows


def _speedup(summary: dict, reference: dict) -> dict:
    return speedup(summary["mean_curve"], reference["mean_curve"] or [np.nan],
                   diverged=summary["diverged"], reference_diverged=reference["diverged"])


def _named(summaries, name):
    return next(s for s in summaries if s["name"] == name)
