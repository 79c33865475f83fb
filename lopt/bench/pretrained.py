"""``lopt bench pretrained``: the shipped general-purpose learned optimizers on a meta-test set
they never saw, against Adam at its default learning rate, Adam with one learning rate tuned
across the whole suite, and Adam and AdamW each tuned per task.

Every task is out of the recipes' distribution (``mixture:tiny_images``: 32-unit MLPs at 8×8
and 14×14, one small 2-D conv net, horizons 100-1000): an MLP 10× wider, one 3× deeper, conv
nets on MNIST and on MNIST-1D (1-D convolutions), an autoencoder, a character LSTM and a
transformer language model, an MLP on a table, and one task at 10× the longest meta-training
horizon. Losses are normalized per task (1: the initial loss, 0: the best mean loss Adam tuned
on the normalization's own instances reaches), so tasks can be aggregated.

Protocol: learning rates are tuned on tuning instances (``TUNE_SEED``), results reported on
separate evaluation instances (``EVAL_SEED``); nothing here was used to meta-train or pick the
learned optimizers; a run that diverges is counted and ranks below every run that did not.
"""
from __future__ import annotations

import dataclasses
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from lopt.bench.suite import Suite, summarize
from lopt.evaluation import Result, loss_curves, lr_sweep, plots, score, stats, tables
from lopt.evaluation.metrics import format_speedup, speedup, state_bytes_per_parameter
from lopt.evaluation.normalization import adam_reference
from lopt.evaluation.protocol import EVAL_SEED, META_TEST_GRID, TUNE_SEED
from lopt.files.rule_file import load
from lopt.pretrained import PRETRAINED, path
from lopt.recipes import recipe_config
from lopt.rules import adam, adamw, make_rule
from lopt.tasks import make_family, normalized

# The recipes' optimizers, when shipped, and Celo's published weights (`lopt import celo`).
GENERAL = ("celo_tiny", "adafac_tiny", "celo_released", "celo2_broad")
UNTRAINED = "celo2 (untrained start)"
GRID = META_TEST_GRID
ADAMW_DECAY = 0.01
DEFAULT_LR = 1e-3
REFERENCE_REACH = 2  # baselines run REFERENCE_REACH × T steps, so speedups up to it are measured


@dataclasses.dataclass(frozen=True)
class Size:
    tasks: tuple  # (task, inner steps)
    steps: int  # the common horizon; a task with more steps is a long-horizon row
    eval_tasks: int
    tune_tasks: int
    reference_tasks: int
    grid: tuple
    timing_tasks: tuple


# 300 steps is the median of the tiny recipes' horizons (log-uniform in [100, 1000]); the
# 10,000-step row runs 10x their longest. Issue 24 added a regression MLP, a second task 10x
# wider than any model the recipes meta-train on (32 units, channels or model width) and a
# 3,000-step horizon (1.5x celo2_broad's longest); no task here, and no dataset, is in
# celo2_broad's mixture:broad (tests/bench/test_pretrained_suite.py checks). Issue 25 added
# the wide digits MLP in bfloat16 (parameters and activations; lopt.tasks.augment) and an
# MLP-Mixer on 28x28 MNIST (95k parameters, 3x the largest model here before; token mixing
# and layer norm, neither in any meta-training task), then a residual conv net with group norm,
# a ViT and a 4-layer transformer LM (78k-229k parameters).
TASKS = (("digits_mlp_wide", 300), ("digits_mlp_3x32", 300), ("mnist_conv_fc", 300),
         ("mnist1d_conv", 300), ("digits_autoencoder", 300), ("char_rnn", 300),
         ("transformer_lm", 300), ("breast_cancer_mlp", 300), ("breast_cancer_mlp", 10000),
         ("diabetes_mlp", 300), ("mnist_mlp_wide", 300), ("digits_mlp_3x32", 3000),
         ("digits_mlp_wide_bf16", 300), ("mnist_mixer", 300), ("mnist14_resnet", 300),
         ("mnist_vit_p7", 300), ("pysource_transformer_4l", 300))
SIZES = {
    "full": Size(TASKS, 300, 8, 4, 4, GRID, ("digits_mlp_wide", "mnist_conv_fc",
                                             "transformer_lm")),
    "quick": Size((("digits_mlp_wide", 60), ("mnist1d_conv", 60), ("breast_cancer_mlp", 120)),
                  60, 4, 2, 2, GRID[::4], ("digits_mlp_wide",)),
}


def _label(task, steps, common):
    return task if steps == common else f"{task}, {steps} steps"


def shipped_general() -> dict:
    """The general-purpose pretrained optimizers in the package: name -> (rule, theta), and
    with celo2_broad its untrained start (the Muon-like rule at the same β) as an ablation:
    what meta-training added."""

    learned = {name: load(path(name)) for name in GENERAL if name in PRETRAINED}
    if "celo2_broad" in learned:
        learned[UNTRAINED] = recipe_start("celo2_broad")
    return learned


def recipe_start(name: str) -> tuple:
    """(rule, theta) where recipe ``name``'s meta-training starts: its rule and config, and
    the theta ``lopt.outer.train`` draws from its seed (the first split of the seed's key)."""
    cfg = recipe_config(name)
    rule = make_rule(cfg["rule"], **json.loads(cfg.get("rule_config") or "{}"))
    key = jax.random.split(jax.random.PRNGKey(cfg.get("seed", 0)), 3)[0]
    return rule, rule.init_meta(key)


def _sweep_scores(factory, family, steps, tune_tasks, grid) -> list:
    """Per lr of the grid on the tuning instances: (diverged runs, mean final normalized loss)."""

    curves = lr_sweep(factory, family, jax.random.PRNGKey(TUNE_SEED), num_tasks=tune_tasks,
                      num_steps=steps, grid=grid)
    return [list(score(c)) for c in curves]


def _best(scores) -> int:
    return min(range(len(scores)), key=lambda i: tuple(scores[i]))


def global_lr_index(sweeps: list) -> int:
    """The grid index whose lr is best across the suite: fewest diverged runs over all tasks,
    then the lowest mean over tasks of the mean final normalized loss."""
    def key(i):
        return (sum(s[i][0] for s in sweeps), float(np.mean([s[i][1] for s in sweeps])))
    return min(range(len(sweeps[0])), key=key)


def _evaluate(rule, theta, family, steps, name, num_tasks) -> dict:
    """Summary over the evaluation instances at ``steps`` steps."""

    run = jax.jit(lambda th: loss_curves(rule, th, family, jax.random.PRNGKey(EVAL_SEED),
                                         num_tasks=num_tasks, num_steps=steps))
    return summarize(Result(name=name, curves=np.asarray(run(theta))))


_RUNNERS: dict = {}  # one compile per (optimizer, task): the lr is an argument


def _baseline(factory, opt, lr, family, label, steps, name, num_tasks) -> dict:
    """A baseline run REFERENCE_REACH × T steps: its summary at T, and its mean curve and
    divergence count over the whole run for speedups."""

    key = (opt, label, steps, num_tasks)
    if key not in _RUNNERS:
        _RUNNERS[key] = jax.jit(lambda lr: loss_curves(
            factory(learning_rate=lr), {}, family, jax.random.PRNGKey(EVAL_SEED),
            num_tasks=num_tasks, num_steps=REFERENCE_REACH * steps))
    curves = np.asarray(_RUNNERS[key](jnp.asarray(lr, jnp.float32)))
    summary = summarize(Result(name=name, curves=curves[:steps + 1], learning_rate=lr))
    whole = Result(name=name, curves=curves).summary()
    summary["long_curve"], summary["long_diverged"] = whole["mean_curve"], whole["diverged"]
    return summary


def task_speedup(learned: dict, reference: dict) -> dict:
    """``metrics.speedup`` of a learned rule's summary over a reference's REFERENCE_REACH × T
    run (its ``long_curve``), so speedups up to REFERENCE_REACH are measured."""
    steps = len(learned["mean_curve"] or [0]) - 1
    long_curve = reference["long_curve"]
    if long_curve is None:  # every reference run diverged: it reaches nothing
        long_curve = [np.nan] * (REFERENCE_REACH * steps + 1)
    return speedup(learned["mean_curve"], long_curve, diverged=learned["diverged"],
                   reference_diverged=reference["long_diverged"])


def _step_time_ratios(learned: dict, task: str) -> dict:
    """Seconds per inner step of each learned rule over optax.adam's, one run of 8 instances
    for 20 steps each (compiled first), measured back to back in this process."""

    family = make_family(task)
    key = jax.random.PRNGKey(0)

    def seconds(rule, theta):
        run = jax.jit(lambda th: loss_curves(rule, th, family, key, num_tasks=8, num_steps=20))
        jax.block_until_ready(run(theta))
        best = np.inf
        for _ in range(3):
            start = time.perf_counter()
            jax.block_until_ready(run(theta))
            best = min(best, time.perf_counter() - start)
        return best

    base = seconds(adam(DEFAULT_LR), {})
    return {name: seconds(rule, theta) / base for name, (rule, theta) in learned.items()}


def _stage(label: str) -> str:
    return label.replace(", ", "_").replace(" ", "_")


def _adam_side(suite: Suite, sz: Size):
    """Everything that does not depend on the learned optimizers, each stage cached: the
    normalized families, the grid sweeps on the tuning instances, the globally tuned lr and
    the four Adam rows on the evaluation instances."""

    labels = [_label(t, n, sz.steps) for t, n in sz.tasks]
    families, steps = {}, {}
    for (task, n), label in zip(sz.tasks, labels):
        steps[label] = n
        raw = make_family(task)
        families[label] = normalized(raw, adam_reference(raw, num_steps=n,
                                                         num_tasks=sz.reference_tasks))
    factories = {"adam": adam, "adamw": lambda learning_rate: adamw(learning_rate, ADAMW_DECAY)}
    sweeps = {(label, opt): suite.cached(
        f"sweep_{opt}_{_stage(label)}",
        lambda label=label, f=f: _sweep_scores(f, families[label], steps[label], sz.tune_tasks,
                                               sz.grid),
        {"steps": steps[label], "tune": sz.tune_tasks, "grid": list(sz.grid),
         "family": families[label].name}) for label in labels for opt, f in factories.items()}
    global_lr = {opt: sz.grid[global_lr_index([sweeps[(label, opt)] for label in labels])]
                 for opt in factories}
    rows = {}
    for label in labels:
        per_task = {opt: sz.grid[_best(sweeps[(label, opt)])] for opt in factories}
        plan = (("adam (lr 1e-3)", "adam", DEFAULT_LR),
                ("adam (global lr)", "adam", global_lr["adam"]),
                ("adamw (global lr)", "adamw", global_lr["adamw"]),
                ("adam (per-task lr)", "adam", per_task["adam"]),
                ("adamw (per-task lr)", "adamw", per_task["adamw"]))
        rows[label] = [suite.cached(
            f"eval_{_stage(label)}_{name.split(' ')[0]}_{name.split(' ')[1].strip('(')}",
            lambda opt=opt, lr=lr, label=label, name=name: _baseline(
                factories[opt], opt, lr, families[label], label, steps[label], name,
                sz.eval_tasks),
            {"lr": lr, "steps": steps[label], "eval": sz.eval_tasks,
             "family": families[label].name}) for name, opt, lr in plan]
    return labels, families, steps, global_lr, rows


def run(out: str, quick: bool = False, command: str = "lopt bench pretrained",
        progress: bool = True) -> str:
    """Run the suite into ``out`` (stages cached there) for the shipped general-purpose
    optimizers and return its markdown."""
    sz = SIZES["quick" if quick else "full"]
    learned = shipped_general()
    if not learned:
        raise ValueError(f"no general-purpose pretrained optimizer ({', '.join(GENERAL)}) is "
                         "shipped in lopt/pretrained: run its recipe first (lopt train --recipe)")
    stages = len(sz.tasks) * (6 + len(learned)) + 1
    suite = Suite("pretrained", out, sz, command, stages, progress)
    labels, families, steps, global_lr, adam_rows = _adam_side(suite, sz)
    results = {}
    for label in labels:
        rows = [suite.cached(
            f"eval_{_stage(label)}_{name}",
            lambda rule=rule, theta=theta, label=label, name=name: _evaluate(
                rule, theta, families[label], steps[label], name, sz.eval_tasks),
            {"rule": rule.name, "config": rule.config, "steps": steps[label],
             "eval": sz.eval_tasks, "family": families[label].name,
             "theta_sum": float(sum(np.sum(np.abs(np.asarray(x)))
                                    for x in jax.tree.leaves(theta)))})
                for name, (rule, theta) in learned.items()]
        results[label] = rows + adam_rows[label]
        for s in results[label]:
            s["lr_at_grid_edge"] = s["learning_rate"] in (sz.grid[0], sz.grid[-1])
    overhead = suite.cached("step_time", lambda: {t: _step_time_ratios(learned, t)
                                                  for t in sz.timing_tasks},
                            {"learned": sorted(learned), "tasks": list(sz.timing_tasks)})
    probe = families[labels[0]]
    params = probe.build(probe.sample(jax.random.PRNGKey(0))).init(jax.random.PRNGKey(0))
    state_bytes = {name: state_bytes_per_parameter(rule, theta, params)
                   for name, (rule, theta) in learned.items()}
    _report(suite, sz, learned, labels, results, global_lr, overhead, state_bytes)
    return suite.finish(
        "Pretrained learned optimizers on an out-of-distribution meta-test set",
        f"The shipped general-purpose optimizers ({', '.join(learned)}; celo_tiny and "
        "adafac_tiny made by `lopt train --recipe NAME` on mixture:tiny_images (digits and "
        "MNIST: the same data as four meta-test tasks), celo2_broad by `lopt train --recipe "
        "celo2_broad` on mixture:broad (no meta-test task or dataset), see "
        "benchmarks/pretrained/runs/; celo_released is Celo's published weights, meta-trained "
        "by its authors on 4 image MLP tasks, imported with `lopt import celo`) on tasks they "
        f"never saw, {sz.steps} steps (the long-horizon rows: their own count), against Adam "
        f"at lr {DEFAULT_LR:g}, Adam and AdamW each at the one lr best across the suite's "
        f"tuning instances ({global_lr['adam']:.3g}, {global_lr['adamw']:.3g}), and Adam and "
        f"AdamW (weight decay {ADAMW_DECAY:g}) tuned per task "
        f"on a {len(sz.grid)}-point log grid from {sz.grid[0]:g} to {sz.grid[-1]:g}. "
        f"{sz.eval_tasks} evaluation instances (seed {EVAL_SEED}), tuning on {sz.tune_tasks} "
        f"separate ones (seed {TUNE_SEED}); diverged runs counted, never dropped.")


def _report(suite, sz, learned, labels, results, global_lr, overhead, state_bytes) -> None:
    columns = [s["name"] for s in results[labels[0]]]
    suite.section("Final normalized loss per task",
                  "Mean ± standard error over the runs that did not diverge (0: tuned Adam's "
                  "best on the normalization's instances, 1: the initial loss); diverged runs "
                  "in brackets; the per-task learning rates are those tuned on the tuning "
                  "instances.\n\n"
                  + tables.matrix_table({l: results[l] for l in labels}, columns, transpose=True))
    refs = [c for c in columns if c not in learned]
    speed = {name: {ref: [task_speedup(_named(results[l], name), _named(results[l], ref))
                          for l in labels] for ref in refs} for name in learned}
    lines = ["| learned | reference | " + " | ".join(labels) + " |",
             "|---|---" + "|---" * len(labels) + "|"]
    for name in learned:
        for ref in refs:
            cells = [format_speedup(s, ".2f") for s in speed[name][ref]]
            lines.append(f"| {name} | {ref} | " + " | ".join(cells) + " |")
    suite.section("Speedup over Adam per task",
                  "Steps the reference's mean curve needs to reach the learned rule's final "
                  f"mean loss, over the rule's steps; references run {REFERENCE_REACH}× as "
                  f"long, so `≥ {REFERENCE_REACH}` means Adam never got there. Above 1: the "
                  "learned optimizer is faster.\n\n" + "\n".join(lines) + "\n")
    finals = {c: stats.scores_matrix([_finals(_named(results[l], c)) for l in labels])
              for c in columns}
    loss_iqm = stats.iqm_with_ci(finals)
    speed_iqm = stats.iqm_with_ci({f"{n} vs {r}": np.array([[s["value"]] for s in speed[n][r]])
                                   for n in learned for r in refs})
    lines = tables.iqm_table(loss_iqm, finals, "IQM final normalized loss")
    lines += ["", "| learned vs reference | IQM speedup over tasks | 95% CI |", "|---|---|---|"]
    for k, e in speed_iqm.items():
        lines.append(f"| {k} | {e['iqm']:.3g} | [{e['low']:.3g}, {e['high']:.3g}] |")
    suite.section("Aggregate over the meta-test set",
                  "IQM over all runs of all tasks with a 95% stratified-bootstrap interval "
                  "(rliable; runs resampled within tasks; a diverged run scores +inf). The "
                  "speedup IQM is over the per-task speedups, its interval from resampling "
                  "tasks.\n\n" + "\n".join(lines) + "\n")
    lines = ["| learned | " + " | ".join(f"step time / adam on {t}" for t in overhead)
             + " | state bytes / parameter |", "|---" * (len(overhead) + 2) + "|"]
    for name in learned:
        lines.append(f"| {name} | " + " | ".join(f"{overhead[t][name]:.2f}" for t in overhead)
                     + f" | {state_bytes[name]:.1f} |")
    suite.section("Wall-clock overhead and memory",
                  "Seconds per inner step (8 instances, 20 steps, best of 3 after compiling) "
                  "relative to optax.adam's on the same task, measured back to back; optimizer-"
                  f"state bytes per parameter on {labels[0]}.\n\n" + "\n".join(lines) + "\n")
    plots.interval_bars(loss_iqm, suite.figure("iqm.png"), "pretrained on the meta-test set",
                        "IQM of final normalized loss (lower is better)")
    for label in labels:
        plots.curves_with_spread(results[label], suite.figure(
            f"curves_{_stage(label)}.png"),
            f"{label} (meta-test)", "normalized loss")
    suite.payload.update({"tasks": labels, "global_lr": global_lr, "results": results,
                          "speedup": speed, "iqm_loss": loss_iqm, "iqm_speedup": speed_iqm,
                          "step_time_vs_adam": overhead, "state_bytes": state_bytes})


def _finals(summary) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in summary["final"]], np.float64)


def _named(summaries, name):
    return next(s for s in summaries if s["name"] == name)
