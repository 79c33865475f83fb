"""``lopt bench step_scale``: the one learning rate (Celo2's step scale β) of the celo2
recipes (``celo2_broad``, ``celo2_graft``), chosen on their meta-training families only, never
on a meta-test task.

Sweeps on the tuning instances (``TUNE_SEED``) of every family of the recipe's mixture,
normalized as meta-training sees them: (1) for a recipe that starts from scratch, the untrained
rule (Muon-like: the normalized, orthogonalized first momentum) over a 14-point log grid, whose
best β meta-training then starts from and keeps (``celo2_graft`` starts from ``celo2_broad``'s
theta and β instead); (2) once the recipe has run, its meta-trained theta at β × 2^k,
k = −2…2 (celo2_graft: −2…4), whose best is the shipped default. The best is the lr with
the fewest diverged runs over all families, then the lowest mean over families of the mean
final normalized loss (celo2_graft: the lowest worst family's, ``worst_family_index``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os

import jax
import numpy as np

from lopt.bench.pretrained import global_lr_index, recipe_start
from lopt.bench.suite import Suite
from lopt.evaluation import lr_sweep, meta_validation, normalize_all, score
from lopt.evaluation.protocol import META_TEST_GRID, TUNE_SEED
from lopt.files.rule_file import load, save
from lopt.pretrained.recipes import recipe_config
from lopt.rules import make_rule
from lopt.tasks import Mixture, make_family

RECIPES = ("celo2_broad", "celo2_graft")
FACTORS = (0.25, 0.5, 1.0, 2.0, 4.0)
# celo2_graft's β multiplies Adam's step size (grafted), not a fixed RMS: on its first family
# the ×4 edge of FACTORS was still the best, so its sweep reaches ×16.
FACTORS_OF = {"celo2_graft": FACTORS + (8.0, 16.0)}
# celo2_graft's β is chosen by its worst family (issue 35: judge by the worst case): by the
# mean over families, one loss-scaled family's gains pick the grid's ×16 edge, which leaves
# the deep ReLU regression at loss scale 10³ (what broke celo2_broad) 0.48 worse than at ×4.
WORST_CASE = frozenset({"celo2_graft"})
# celo2_graft's β, chosen on 300-step runs, grew the weights of a 1,000-step deep regression
# 23 -> 217 and ended 5.8x above Adam at 1e-3 (diagnosis_v3): a β chosen where the runs are
# short does not see the path an orthogonalized step takes over a long one, and the rule has
# nothing that pulls the weights back. Its second version keeps the rule and theta, adds
# decoupled weight decay λ inside the rule (celo2's weight_decay) and chooses (β, λ) by the
# worst family over both the 300-step runs and runs at the recipe's longest meta-training
# horizon (2,000 steps), on the same tuning instances: version -> (recipe, ((λ, factors of the
# training β), ...), long horizon).
VERSIONS = {"celo2_graft_v2": ("celo2_graft", ((0.0, (0.5, 1.0, 2.0, 4.0)),
                                               (0.1, (1.0, 2.0, 4.0)),
                                               (1.0, (1.0, 2.0, 4.0))), 2000)}


def trained_path(recipe: str) -> str:
    """Where the recipe's run is committed (benchmarks/pretrained/runs/): sweep (2) reads it."""
    return os.path.join("benchmarks", "pretrained", "runs", recipe, "celo2.lopt")


def worst_family_index(sweeps: list) -> int:
    """The grid index with the fewest diverged runs over all families, then the lowest worst
    family's mean final normalized loss (0: tuned Adam's best, 1: the initial loss), then the
    lowest mean over families."""
    def key(i):
        return (sum(s[i][0] for s in sweeps), max(s[i][1] for s in sweeps),
                float(np.mean([s[i][1] for s in sweeps])))
    return min(range(len(sweeps[0])), key=key)


@dataclasses.dataclass(frozen=True)
class Size:
    steps: int
    tune_tasks: int
    grid: tuple
    reference_tasks: int


SIZES = {"full": Size(300, 4, META_TEST_GRID, 8),
         "quick": Size(30, 2, META_TEST_GRID[4::3], 2)}


def _families(sz: Size, recipe: str):
    cfg = recipe_config(recipe)
    mixture = normalize_all(make_family(cfg["task"]), num_steps=cfg["horizon"],
                            num_tasks=sz.reference_tasks)
    return cfg, mixture.families


def _fixed_theta(name: str, kwargs: dict, theta):
    """factory(learning_rate) -> the rule at step_scale = learning_rate whose init_meta gives
    ``theta`` (what ``lr_sweep`` runs)."""
    def factory(learning_rate):
        rule = make_rule(name, **{**kwargs, "step_scale": learning_rate})
        return dataclasses.replace(rule, init_meta=lambda key: theta)
    return factory


def _sweep(suite, label, factory, families, sz, grid, steps=None) -> list:
    """Per family, per lr: [diverged runs, mean final normalized loss] after ``steps`` (the
    size's by default)."""
    steps = steps or sz.steps
    return [suite.cached(f"{label}_{f.name}", lambda f=f: [list(score(c)) for c in lr_sweep(
        factory, f, jax.random.PRNGKey(TUNE_SEED), num_tasks=sz.tune_tasks,
        num_steps=steps, grid=grid)], {"steps": steps, "tune": sz.tune_tasks,
                                       "grid": list(grid), "family": f.name, "what": label})
            for f in families]


def _table(grid, sweeps, families, best, worst: bool = False) -> str:
    lines = ["| lr | " + " | ".join(f.name.removesuffix("_normalized") for f in families)
             + " | mean |" + (" worst |" if worst else "") + " diverged |",
             "|---" * (len(families) + 3 + worst) + "|"]
    for i, lr in enumerate(grid):
        cells = [f"{s[i][1]:.3f}" for s in sweeps]
        mean = float(np.mean([s[i][1] for s in sweeps]))
        mark = "**" if i == best else ""
        tail = f" {max(s[i][1] for s in sweeps):.3f} |" if worst else ""
        name = lr if isinstance(lr, str) else f"{lr:.3g}"
        lines.append(f"| {mark}{name}{mark} | " + " | ".join(cells)
                     + f" | {mark}{mean:.3f}{mark} |{tail} {sum(s[i][0] for s in sweeps)} |")
    return "\n".join(lines) + "\n"


def run(out: str, quick: bool = False, command: str = "lopt bench step_scale",
        progress: bool = True) -> str:
    sz = SIZES["quick" if quick else "full"]
    plans = [(recipe, *_families(sz, recipe)) for recipe in RECIPES]
    trained = {recipe: os.path.exists(trained_path(recipe)) and not quick for recipe in RECIPES}
    stages = sum(len(families) * ((not cfg.get("init_from")) + trained[recipe]) + 1
                 for recipe, cfg, families in plans)
    versions = [(v, dict((r, f) for r, _, f in plans)[recipe], grid, long)
                for v, (recipe, grid, long) in VERSIONS.items()
                if os.path.exists(trained_path(recipe))]
    stages += sum(2 * len(families) * len(grid) for _, families, grid, _ in versions)
    suite = Suite("step_scale", out, sz, command, stages, progress)
    for recipe, cfg, families in plans:
        _recipe(suite, sz, out, recipe, cfg, families, trained[recipe])
    for version, families, grid, long in versions:
        _version(suite, sz, out, version, families, grid, 2 * sz.steps if quick else long)
    return suite.finish("The celo2 recipes' learning rates, chosen on meta-training families",
                        "Issues 24 and 35: each rule gets one default learning rate, chosen "
                        "here on tuning instances of its meta-training families only.")


def _recipe(suite, sz, out, recipe, cfg, families, trained) -> None:
    """The sweeps of one recipe: its start (unless warm-started), the meta-validation line
    its run has to get below, and its meta-trained theta around its β."""
    kwargs = json.loads(cfg["rule_config"])
    prefix = "" if recipe == RECIPES[0] else f"{recipe}_"  # celo2_broad's stages predate it
    rule, theta0 = recipe_start(recipe)
    if not cfg.get("init_from"):
        initial = _sweep(suite, f"{prefix}initial", _fixed_theta(cfg["rule"], kwargs, theta0),
                         families, sz, sz.grid)
        best = global_lr_index(initial)
        suite.section(f"{recipe}: the untrained rule",
                      f"`{cfg['rule']}` {kwargs} at its initial theta (the seed-"
                      f"{cfg.get('seed', 0)} draw meta-training starts from), {sz.tune_tasks} "
                      f"tuning instances per family, {sz.steps} steps; mean final normalized "
                      f"loss (0: tuned Adam, 1: the initial loss). Best: "
                      f"**{sz.grid[best]:.3g}** (the recipe's step_scale is "
                      f"{kwargs['step_scale']:g}).\n\n" + _table(sz.grid, initial, families, best))
        suite.payload[f"{prefix}initial"] = {"grid": list(sz.grid), "scores": initial,
                                             "best": sz.grid[best]}
    # Where meta-training starts, on the instances its meta-validation scores (train_log's
    # valid/mean): the line a meta-trained theta has to get below.
    start = suite.cached(f"{prefix}meta_validation_start", lambda: meta_validation(
        rule, Mixture(families), num_tasks=cfg["validate_tasks"],
        num_steps=cfg["validate_steps"])(theta0),
        {"rule": rule.config, "tasks": cfg["validate_tasks"], "steps": cfg["validate_steps"]})
    start_of = (f"`{cfg['init_from']}`'s theta in the recipe's rule {kwargs}"
                if cfg.get("init_from") else "The untrained rule at the recipe's β")
    suite.section(f"{recipe}: meta-validation before meta-training",
                  f"{start_of} on the recipe's meta-validation instances "
                  f"({cfg['validate_tasks']} per family of {cfg['task']}, "
                  f"{cfg['validate_steps']} steps): mean **{start['mean']:.3f}** "
                  f"({start['diverged']} diverged); `valid/mean` in the run's train_log.jsonl "
                  "is the same measure.\n")
    suite.payload[f"{prefix}meta_validation_start"] = start
    if trained:
        path = trained_path(recipe)
        trained_rule, theta = load(path)
        base = trained_rule.config["step_scale"]
        factors = FACTORS_OF.get(recipe, FACTORS)
        grid = tuple(base * k for k in factors)
        config = {k: v for k, v in trained_rule.config.items() if k != "step_scale"}
        sweeps = _sweep(suite, f"{prefix}trained", _fixed_theta(trained_rule.name, config,
                                                                theta), families, sz, grid)
        best_t = (worst_family_index if recipe in WORST_CASE else global_lr_index)(sweeps)
        by = "worst family" if recipe in WORST_CASE else "mean"
        suite.section(f"{recipe}: the meta-trained rule",
                      f"`{path}` at β × ({factors[0]:g} … {factors[-1]:g}) of its training "
                      f"β = {base:g}, the same instances. Best (the fewest divergences, then "
                      f"the lowest {by}): **{grid[best_t]:.3g}**, the shipped default.\n\n"
                      + _table(grid, sweeps, families, best_t, worst=recipe in WORST_CASE))
        suite.payload[f"{prefix}trained"] = {"grid": list(grid), "scores": sweeps,
                                             "best": grid[best_t]}
        shipped = make_rule(trained_rule.name, **{**config, "step_scale": grid[best_t]})
        save(os.path.join(out, f"{recipe}.lopt"), shipped, theta, extra={
            "recipe": recipe, "meta_trained": path, "meta_trained_step_scale": base,
            "step_scale_chosen_by": f"lopt bench step_scale (tuning instances of {cfg['task']})",
            "meta_trained_sha256": hashlib.sha256(open(path, "rb").read()).hexdigest()})


def _version(suite, sz, out, version, families, decay_grid, long) -> None:
    """A shipped recipe's next version: its meta-trained rule and theta with weight decay λ at
    β × factors for every (λ, factors) of ``decay_grid``, on the same tuning instances at the
    size's horizon and at ``long`` steps; the best is the fewest divergences over both, then
    the lowest worst family over both, then the lowest mean. Writes ``OUT/VERSION.lopt``."""
    recipe = VERSIONS[version][0]
    path = trained_path(recipe)
    trained_rule, theta = load(path)
    base = trained_rule.config["step_scale"]
    config = {k: v for k, v in trained_rule.config.items() if k != "step_scale"}
    with_decay = lambda d: {**config, **({"weight_decay": d} if d else {})}  # noqa: E731
    candidates, short, longer = [], [[] for _ in families], [[] for _ in families]
    for decay, factors in decay_grid:
        grid = tuple(base * k for k in factors)
        factory = _fixed_theta(trained_rule.name, with_decay(decay), theta)
        label = version if not decay else f"{version}_wd{decay:g}"
        for into, sweeps in ((short, _sweep(suite, f"{label}_short", factory, families, sz, grid)),
                             (longer, _sweep(suite, f"{label}_long", factory, families, sz,
                                             grid, long))):
            for f, scores in enumerate(sweeps):
                into[f] += scores
        candidates += [(lr, decay) for lr in grid]
    best = worst_family_index(short + longer)
    beta, decay = candidates[best]
    names = [f"{lr:.3g}, λ {d:g}" for lr, d in candidates]
    spans = "; ".join(f"λ {d:g}: " + ", ".join(f"{k:g}" for k in ks) for d, ks in decay_grid)
    text = (f"`{path}` (the {recipe} run) at weight decay λ and β × factors of its training "
            f"β = {base:g} ({spans}), "
            f"the tuning instances of every family, after {sz.steps} and after {long} steps. "
            "Best (the fewest divergences over both, then the lowest worst family over both, "
            f"then the lowest mean): **β {beta:.3g}, λ {decay:g}**, {version}'s default.\n\n")
    suite.section(f"{version}: {recipe}'s rule and theta, with weight decay, chosen over short "
                  "and long runs", text + f"After {sz.steps} steps:\n\n"
                  + _table(names, short, families, best, worst=True)
                  + f"\nAfter {long} steps:\n\n"
                  + _table(names, longer, families, best, worst=True))
    suite.payload[version] = {"grid": [list(c) for c in candidates], "steps": [sz.steps, long],
                              "scores": [short, longer], "best": [beta, decay]}
    shipped = make_rule(trained_rule.name, **with_decay(decay), step_scale=beta)
    save(os.path.join(out, f"{version}.lopt"), shipped, theta, extra={
        "recipe": recipe, "version": version, "meta_trained": path,
        "meta_trained_step_scale": base,
        "step_scale_chosen_by": f"lopt bench step_scale ({version}: tuning instances of the "
                                f"recipe's mixture, {sz.steps} and {long} steps, with weight "
                                "decay)",
        "meta_trained_sha256": hashlib.sha256(open(path, "rb").read()).hexdigest()})
