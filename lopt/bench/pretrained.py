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

from lopt.bench import workers
from lopt.bench.pretrained_report import (  # noqa: F401 (task_speedup: API)
    DEFAULT_ROW,
    ONCE_ROW,
    TUNED_ROW,
    report,
    task_speedup,
)
from lopt.bench.pretrained_tuning import (  # noqa: F401 (cosine, global_lr_index: API)
    checksum,
    cosine,
    global_lr_index,
    hand_rule,
    learned_rule,
    stage_name,
    tuned_learned_plan,
    tuned_lrs,
)
from lopt.bench.suite import Suite, summarize
from lopt.evaluation import Result, loss_curves
from lopt.evaluation.curves import curves_and_norm_growth
from lopt.evaluation.metrics import state_bytes_per_parameter
from lopt.evaluation.normalization import adam_reference
from lopt.evaluation.protocol import EVAL_SEED, META_TEST_GRID, TUNE_SEED
from lopt.files.errors import UsageError
from lopt.files.rule_file import load
from lopt.outer import initial_theta
from lopt.pretrained import PRETRAINED, path
from lopt.pretrained.recipes import recipe_config
from lopt.rules import adam, adamw, make_rule
from lopt.tasks import make_family, normalized

# The recipes' optimizers, when shipped, and Celo's published weights (`lopt import celo`).
GENERAL = ("celo_tiny", "adafac_tiny", "celo_released", "celo2_broad", "celo2_graft",
           "celo2_graft_v2")
UNTRAINED = "celo2 (untrained start)"
GRID = META_TEST_GRID
ADAMW_DECAY = 0.01
DEFAULT_LR = 1e-3
REFERENCE_REACH = 2  # baselines run REFERENCE_REACH × T steps, so speedups up to it are measured
COSINE = " + cosine"  # the common schedule's rows: linear warm-up over 5%, cosine decay to 0


@dataclasses.dataclass(frozen=True)
class Size:
    tasks: tuple  # (task, inner steps)
    steps: int  # the common horizon; a task with more steps is a long-horizon row
    eval_tasks: int
    tune_tasks: int
    reference_tasks: int
    grid: tuple
    timing_tasks: tuple
    tuned_learned: tuple  # learned optimizers whose step scale is also tuned (equal budgets)
    cosine_learned: tuple  # learned optimizers that also run under the common schedule
    tuned_later: tuple = ()  # tuned too, after every other row (their sweeps cost the most)


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
         ("mnist_vit_p7", 300), ("pysource_transformer_4l", 300),
         # Issue 35: what broke celo2_broad as a drop-in. Wide (256) MLPs for regression and
         # classification, loss scales of 10^4 and 10^-3, one more attention model, and long
         # horizons on four kinds of model (an MLP to 5,000 steps, a 1-D conv net, a character
         # LSTM and a transformer LM).
         ("diabetes_mlp_deep_wide", 300), ("diabetes_mlp_deep_wide", 1000),
         ("breast_cancer_mlp_wide", 300), ("diabetes_mlp_loss_x1e4", 300),
         ("digits_mlp_loss_x1e-3", 300), ("digits_vit", 300), ("diabetes_mlp", 5000),
         ("mnist1d_conv", 1000), ("char_rnn", 1000), ("transformer_lm", 2000))
SIZES = {
    # Equal budgets for the headline only and the common schedule for the optimizer it
    # replaces: a learned step-scale sweep costs 56 runs per task (about 4,500 s on the ViT
    # alone; ~20 h for 27 tasks on 2 cores), so the earlier optimizers (superseded, or Celo's
    # own weights with their own learned schedule) keep their untuned rows; docs/pretrained.md
    # says so.
    "full": Size(TASKS, 300, 8, 4, 4, GRID, ("digits_mlp_wide", "mnist_conv_fc",
                                             "transformer_lm"),
                 ("celo2_graft", "celo2_graft_v2"), ("celo2_broad",),
                 ("celo2_broad", "adafac_tiny", "celo_tiny", "celo_released")),
    "quick": Size((("digits_mlp_wide", 60), ("mnist1d_conv", 60), ("breast_cancer_mlp", 120)),
                  60, 4, 2, 2, GRID[::4], ("digits_mlp_wide",), ("celo2_broad",),
                  ("celo2_broad",), ("adafac_tiny",)),
}


def _label(task, steps, common):
    return task if steps == common else f"{task}, {steps} steps"


def shipped_general() -> dict:
    """The general-purpose pretrained optimizers in the package: name -> (rule, theta), and
    the newest celo2 recipe's start as an ablation, what meta-training added: celo2_graft's
    (celo2_broad's theta in the grafted, scheduled rule) once it is shipped, else celo2_broad's
    (the Muon-like rule at the same β)."""

    learned = {name: load(path(name)) for name in GENERAL if name in PRETRAINED}
    if "celo2_graft" in learned:
        learned["celo2_graft (untrained start)"] = recipe_start("celo2_graft")
    elif "celo2_broad" in learned:
        learned[UNTRAINED] = recipe_start("celo2_broad")
    return learned


def recipe_start(name: str) -> tuple:
    """(rule, theta) where recipe ``name``'s meta-training starts: its rule and config, and
    the theta of its ``init_from`` file when it names one, else the theta ``lopt.outer.train``
    draws from its seed (``initial_theta``, what training itself calls)."""
    cfg = recipe_config(name)
    rule = make_rule(cfg["rule"], **json.loads(cfg.get("rule_config") or "{}"))
    warm = load(path(cfg["init_from"]))[1] if cfg.get("init_from") else None
    return rule, initial_theta(rule, cfg.get("seed", 0), warm)


def _row(factory, lr, raw, reference, steps, reach, name, num_tasks) -> dict:
    """``factory(lr)`` on the evaluation instances of the raw family for ``reach`` × ``steps``
    steps: the summary of its normalized curves at ``steps`` (``reference.normalize``, as
    meta-training sees a loss), every run's raw initial and final loss there, its weight-norm
    growth at the run's end, and with ``reach`` > 1 the normalized mean curve of the whole run
    for speedups."""
    def run(lr_arg):
        rule, theta = factory(None if lr is None else lr_arg)
        return curves_and_norm_growth(rule, theta, raw, jax.random.PRNGKey(EVAL_SEED),
                                      num_tasks=num_tasks, num_steps=reach * steps)

    raw_curves, growth = jax.jit(run)(jnp.asarray(0.0 if lr is None else lr, jnp.float32))
    # Compiled programs are not kept: in one process, hundreds of rows' executables exhausted
    # the kernel's memory-map limit (65,530) and LLVM failed mid-suite with "Cannot allocate
    # memory" (the 27-task run, 133 stages in); each row runs once per invocation anyway.
    jax.clear_caches()
    curves = np.asarray(reference.normalize(raw_curves), np.float64)
    raw_curves = np.asarray(raw_curves, np.float64)
    summary = summarize(Result(name=name, curves=curves[:steps + 1],
                               learning_rate=None if lr is None else float(lr)))
    summary["raw_initial"] = raw_curves[0].tolist()
    summary["raw_final"] = [None if not np.isfinite(v) else float(v)
                            for v in raw_curves[steps]]
    summary["norm_growth"] = np.asarray(growth, np.float64).tolist()
    if reach > 1:
        whole = Result(name=name, curves=curves).summary()
        summary["long_curve"], summary["long_diverged"] = whole["mean_curve"], whole["diverged"]
    return summary


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


def _families(suite, sz: Size) -> tuple:
    """labels, steps, raw families, their Adam references and the normalized families. The
    references are cached beside the suite's stages (``CACHE/normalization/``), so a second
    worker (computing them in its own order) and a resumed run read them back."""
    labels = [_label(t, n, sz.steps) for t, n in sz.tasks]
    steps, raw, refs, norm = {}, {}, {}, {}
    for (task, n), label in suite.in_order(list(zip(sz.tasks, labels))):
        steps[label], raw[label] = n, make_family(task)
        refs[label] = adam_reference(raw[label], num_steps=n, num_tasks=sz.reference_tasks,
                                     cache_dir=suite.cache_folder)
        norm[label] = normalized(raw[label], refs[label])
    return labels, steps, raw, refs, norm


def _rows(suite, sz, labels, steps, raw, refs, plan, reach) -> dict:
    """label -> [summary] for every (row name, factory, lr or {label: lr}, schedule, tag) of
    ``plan``, each a cached stage (``tag``: what else identifies the row, e.g. its theta)."""
    rows = {}
    for label in suite.in_order(labels):
        rows[label] = []
        for name, make, lr, scheduled, tag in plan:
            lr = lr.get(label) if isinstance(lr, dict) else lr
            factory = make(steps[label] * reach if scheduled else None)
            rows[label].append(suite.cached(
                f"eval_{stage_name(label)}_{stage_name(name)}",
                lambda factory=factory, lr=lr, label=label, name=name: _row(
                    factory, lr, raw[label], refs[label], steps[label], reach, name,
                    sz.eval_tasks),
                {"lr": lr, "steps": steps[label], "eval": sz.eval_tasks, "reach": reach,
                 "family": raw[label].name, "version": 2, **tag}))
    return rows


def _interim_section(suite, pending, stages, tasks_left, newest) -> None:
    done = [s for s in suite.stages.values() if s["wall_s"] is not None]
    hours = sum(s["wall_s"] for s in done) / 3600
    tasks = (f"only the {len(suite.size.tasks) - len(tasks_left)} of {len(suite.size.tasks)} "
             f"tasks whose Adam references and {newest} rows are cached (still pending: "
             + "; ".join(tasks_left) + "), so every aggregate is over those tasks alone, and "
             if tasks_left else "every task, and ")
    suite.sections.insert(0, (
        "## Interim: the stages cached so far\n\n"
        f"{len(suite.stages)} of {stages} stages are cached ({hours:.1f} h of compute recorded "
        f"by {len(done)} of them); `lopt bench pretrained` is still computing the rest. The "
        f"tables below hold {tasks}only the rows cached on all of them; the rows still "
        "pending: " + (", ".join(pending) if pending else "none") + ".\n"))


def run(out: str, quick: bool = False, command: str = "lopt bench pretrained",
        progress: bool = True, interim: bool = False, cache: str | None = None,
        reverse: bool = False) -> str:
    """Run the suite into ``out`` (stages cached there, or in ``cache``) for the shipped
    general-purpose optimizers and return its markdown; ``interim``: compute nothing, report
    the rows whose stages are all cached so far into ``out/interim``; ``reverse``: compute the
    tasks' stages last task first (a second worker on a shared ``cache``)."""
    sz = SIZES["quick" if quick else "full"]
    learned = shipped_general()
    if not learned:
        raise UsageError(f"no general-purpose pretrained optimizer ({', '.join(GENERAL)}) is "
                         "shipped in lopt/pretrained: run its recipe first (lopt train --recipe)")
    tuned = [n for n in sz.tuned_learned if n in learned
             and "step_scale" in learned[n][0].config]
    scheduled = [n for n in sz.cosine_learned if n in learned
                 and learned[n][0].config.get("schedule") != "cosine"]
    stages = len(sz.tasks) * (8 + len(learned) + len(scheduled)
                              + 3 * len(set(tuned) | set(sz.tuned_later))) + 1
    suite = Suite("pretrained", out, sz, command, stages, progress, interim, cache, reverse)
    labels, steps, raw, refs, norm = _families(suite, sz)
    hand = {"adam": adam, "adamw": lambda learning_rate: adamw(learning_rate, ADAMW_DECAY)}
    once, per_task = tuned_lrs(suite, sz, labels, steps, norm, hand)
    ids = {n: {"rule": rule.name, "config": rule.config, "theta_sum": checksum(theta)}
           for n, (rule, theta) in learned.items()}
    once_l, tuned_plan = tuned_learned_plan(suite, sz, labels, steps, norm, learned, tuned, ids)
    # The references first, then the newest optimizer's rows: what an interim report needs
    # to judge the headline comes earliest. They run REFERENCE_REACH x T steps, so speedups up
    # to it are measured.
    references = [("adam (lr 1e-3)", adam, DEFAULT_LR), ("adam (global lr)", adam, once["adam"]),
                  ("adamw (global lr)", hand["adamw"], once["adamw"]),
                  ("adam (per-task lr)", adam,
                   {label: per_task[(label, "adam")] for label in labels}),
                  ("adamw (per-task lr)", hand["adamw"],
                   {label: per_task[(label, "adamw")] for label in labels})]
    baselines = _rows(suite, sz, labels, steps, raw, refs,
                      [(name, lambda s, f=f: hand_rule(f, s), lr, False, {})
                       for name, f, lr in references], REFERENCE_REACH)
    # A rule already scheduled over the run (celo2's schedule "cosine") is its own cosine row.
    plan = [(f"{n}{COSINE if cos else ''}", lambda s, r=rule, t=theta: learned_rule(r, t, s), None,
             cos, ids[n]) for n, (rule, theta) in learned.items() for cos in (False, True)
            if not cos or n in scheduled] + tuned_plan
    plan.append((f"adam (global lr){COSINE}", lambda s: hand_rule(adam, s), once["adam"], True, {}))
    newest = [n for n in GENERAL if n in learned][-1]
    first = [p for p in plan if p[0].split(" ")[0] == newest]
    rest = [p for p in plan if p not in first]
    rows = _rows(suite, sz, labels, steps, raw, refs, first, 1)
    rows_rest = _rows(suite, sz, labels, steps, raw, refs, rest, 1)
    # The other learned optimizers' equal budgets last: every row above is cached by then.
    later = [n for n in sz.tuned_later if n in learned and n not in tuned
             and "step_scale" in learned[n][0].config]
    once_later, later_plan = tuned_learned_plan(suite, sz, labels, steps, norm, learned, later, ids)
    once_l.update(once_later)
    later_rows = _rows(suite, sz, labels, steps, raw, refs, later_plan, 1)
    by_name = {label: dict(zip([p[0] for p in first + rest + later_plan + references],
                               rows[label] + rows_rest[label] + later_rows[label]
                               + baselines[label])) for label in labels}
    names = [p[0] for p in plan + later_plan + references]
    # An interim report covers the tasks whose references and newest optimizer's rows (the
    # order they are computed in) are all cached, and there the rows cached on every one of
    # them; a full run has every row of every task.
    all_labels, required = labels, [n for n, _, _ in references] + [p[0] for p in first]
    labels = [label for label in labels if all(by_name[label][n] is not None
                                               for n in required)]
    if not labels:
        raise UsageError(f"{out}: an interim report needs the Adam references' and {newest}'s "
                         f"rows of at least one task, and none has them all cached yet "
                         f"({len(suite.missing)} stages missing); run lopt bench pretrained to "
                         "compute them")
    pending = [n for n in names if any(by_name[label][n] is None for label in labels)]
    results = {label: [by_name[label][n] for n in names if n not in pending]
               for label in labels}
    for label in labels:
        for s in results[label]:
            s["lr_at_grid_edge"] = s["learning_rate"] in (sz.grid[0], sz.grid[-1])
    # Timed by the first worker only, once no second one shares the cores.
    def step_times():
        workers.wait_alone(suite.cache_folder, say=lambda m: print(f"lopt bench: {m}",
                                                                    flush=True))
        return {t: _step_time_ratios(learned, t) for t in sz.timing_tasks}

    # The cores it is timed on are one of its settings: a run pinned to fewer (taskset, as
    # two workers sharing the machine run best) times again when run on all of them.
    cores = workers.cores()
    overhead = None if suite.reverse else suite.cached(
        "step_time", step_times, {"learned": sorted(learned), "tasks": list(sz.timing_tasks),
                                  "cores": cores})
    probe = norm[labels[0]]
    params = probe.build(probe.sample(jax.random.PRNGKey(0))).init(jax.random.PRNGKey(0))
    state_bytes = {name: state_bytes_per_parameter(rule, theta, params)
                   for name, (rule, theta) in learned.items()}
    report(suite, sz, learned, labels, results, {**once, **once_l}, overhead, state_bytes,
           REFERENCE_REACH, timing_cores=cores)
    if suite.interim:
        _interim_section(suite, pending, stages, [x for x in all_labels if x not in labels],
                         newest)
    # The JSON keeps every number but the curves: the PNGs show them and the committed stage
    # cache holds them; with them it was 64 MB, most of it a copy of that cache.
    suite.payload["results"] = {label: [{k: v for k, v in row.items()
                                         if not k.endswith("_curve")} for row in rows]
                                for label, rows in results.items()}
    return suite.finish(
        "Pretrained learned optimizers on an out-of-distribution meta-test set",
        f"The shipped general-purpose optimizers ({', '.join(learned)}; celo_tiny and "
        "adafac_tiny made by `lopt train --recipe NAME` on mixture:tiny_images (digits and "
        "MNIST: the same data as four meta-test tasks), celo2_broad and celo2_graft by their "
        "recipes on mixture:broad and mixture:robust (no meta-test task or dataset), see "
        "benchmarks/pretrained/runs/; celo2_graft_v2 is celo2_graft's theta with weight decay "
        "inside the rule, its step scale and decay chosen by lopt bench step_scale on "
        "mixture:robust; celo_released is Celo's published weights, meta-trained "
        "by its authors on 4 image MLP tasks, imported with `lopt import celo`) on tasks they "
        f"never saw, {sz.steps} steps (the long-horizon rows: their own count), against Adam "
        f"at lr {DEFAULT_LR:g}, Adam and AdamW each at the one lr best across the suite's "
        f"tuning instances ({once['adam']:.3g}, {once['adamw']:.3g}), and Adam and "
        f"AdamW (weight decay {ADAMW_DECAY:g}) tuned per task "
        f"on a {len(sz.grid)}-point log grid from {sz.grid[0]:g} to {sz.grid[-1]:g}. Equal "
        f"tuning budgets: {', '.join(tuned + later) or 'no learned optimizer'} also get their "
        "step scale tuned on the same grid and instances, once for the suite and per task. "
        f"`{COSINE.strip(' +')}` rows: {', '.join(scheduled + ['Adam at its suite-wide lr'])}"
        " under one schedule (linear warm-up over 5% of the run, cosine decay to 0 at its "
        "end); celo2_graft and celo2_graft_v2 run under that schedule by construction, "
        f"celo_released under its own learned one. {sz.eval_tasks} evaluation instances "
        f"(seed {EVAL_SEED}), tuning on "
        f"{sz.tune_tasks} separate ones (seed {TUNE_SEED}); diverged runs counted, never "
        "dropped; catastrophic runs counted beside them.")
