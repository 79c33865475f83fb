"""Mixture benchmark: what meta-training on a mixture costs, against its families alone.

For the families of a mixture (default: a digits MLP classifier, a digits conv net and a digits
autoencoder; no recurrent task, see docs/tasks.md "Known problem") and a learned rule, time the compile and one outer step of (a) each family
alone with its share of the inner runs and (b) the mixture, whose one jitted step unrolls every
family. The sum of (a) is what round-robin over families would pay to compile and, per cycle
of steps, to run; (b) is what lopt pays.
"""
from __future__ import annotations

import json
import os
import time

import jax

from lopt.files.provenance import git_commit, markdown_line, provenance
from lopt.outer import PES, default_meta_optimizer
from lopt.outer.mixture import build_estimator
from lopt.outer.train import TrainState, make_outer_step
from lopt.rules import make_rule
from lopt.tasks import make_family

RUNS_PER_FAMILY, TRUNCATION, HORIZON, CALLS = 4, 10, 100, 5


def _time_step(rule, family, estimator, theta):
    est = build_estimator(estimator, rule, family)
    opt = default_meta_optimizer(1e-3)
    state = TrainState(theta, opt.init(theta), est.init(jax.random.PRNGKey(1), theta),
                       jax.random.PRNGKey(2), jax.numpy.zeros((), jax.numpy.int32))
    step = jax.jit(make_outer_step(est, opt))
    start = time.perf_counter()
    compiled = step.lower(state).compile()
    compile_s = time.perf_counter() - start
    state, _ = compiled(state)
    jax.block_until_ready(state)
    start = time.perf_counter()
    for _ in range(CALLS):
        state, metrics = compiled(state)
    jax.block_until_ready(metrics)
    return compile_s, (time.perf_counter() - start) / CALLS


DEFAULT_TASK = "mixture:digits_mlp+digits_conv+digits_autoencoder"


def run(out_dir, repeats=None, command="", task=DEFAULT_TASK, rule_name="per_parameter_mlp"):
    del repeats


    wall, code = time.time(), git_commit()
    mixture = make_family(task)
    rule = make_rule(rule_name)
    theta = rule.init_meta(jax.random.PRNGKey(0))
    k = len(mixture.families)
    rows = []
    for family in mixture.families:
        est = PES(num_tasks=RUNS_PER_FAMILY, truncation=TRUNCATION, horizon=HORIZON)
        c, s = _time_step(rule, family, est, theta)
        rows.append({"family": family.name, "compile_s": c, "step_s": s})
    est = PES(num_tasks=RUNS_PER_FAMILY * k, truncation=TRUNCATION, horizon=HORIZON)
    c, s = _time_step(rule, mixture, est, theta)
    together = {"family": f"{task} (one jitted step)", "compile_s": c, "step_s": s}
    alone = {"compile_s": sum(r["compile_s"] for r in rows),
             "step_s": sum(r["step_s"] for r in rows)}
    settings = {"command": command, "task": task, "rule": rule_name, "estimator": "pes",
                "runs_per_family": RUNS_PER_FAMILY, "truncation": TRUNCATION,
                "horizon": HORIZON, "timed_calls": CALLS, "wall_s": time.time() - wall,
                "machine": f"{os.cpu_count()} CPU cores, jax {jax.__version__} "
                           f"({jax.default_backend()})"}
    settings["provenance"] = provenance(command, settings["wall_s"], code)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump({"settings": settings, "families": rows, "mixture": together,
                   "sum_of_families": alone}, f, indent=1)
        f.write("\n")
    lines = ["# The cost of meta-training on a mixture", "", markdown_line(settings["provenance"]),
             "",
             f"Command: `{command}` ({settings['wall_s']:.0f} s on {settings['machine']}). "
             f"Rule {rule_name}, PES, {RUNS_PER_FAMILY} runs per family, truncations of "
             f"{TRUNCATION} steps; step time is the mean of {CALLS} calls after compiling.", "",
             "| what | compile (s) | one outer step (s) |", "|---|---|---|"]
    for r in rows + [together]:
        lines.append(f"| {r['family']} | {r['compile_s']:.1f} | {r['step_s']:.3f} |")
    lines.append(f"| sum of the families alone (round-robin's compile; its step cost per cycle) "
                 f"| {alone['compile_s']:.1f} | {alone['step_s']:.3f} |")
    lines += ["", f"Mixture / sum of families: compile {together['compile_s'] / alone['compile_s']:.2f}"
              f"x, step {together['step_s'] / alone['step_s']:.2f}x."]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(out_dir, "README.md"), "w") as f:
        f.write(text)
    return text
