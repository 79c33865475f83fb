"""Mixture benchmark: what meta-training on a mixture costs, against its families alone.

For the families of a mixture (default: a digits MLP classifier, a digits conv net and a digits
autoencoder; no recurrent task, see docs/tasks.md "Known problem") and a learned rule, time the
compile and one outer step of (a) each family alone with its share of the inner runs and (b) the
mixture, whose one jitted step unrolls every family. The sum of (a) is what round-robin over
families would pay to compile and, per cycle of steps, to run; (b) is what lopt pays.
"""
from __future__ import annotations

import dataclasses
import time

import jax

from lopt.bench.suite import Suite
from lopt.outer import PES, default_meta_optimizer
from lopt.outer.mixture import build_estimator
from lopt.outer.train import TrainState, make_outer_step
from lopt.rules import make_rule
from lopt.tasks import make_family

RUNS_PER_FAMILY, TRUNCATION, HORIZON, CALLS = 4, 10, 100, 5


def _time_step(rule, family, estimator, theta, calls):
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
    for _ in range(calls):
        state, metrics = compiled(state)
    jax.block_until_ready(metrics)
    return compile_s, (time.perf_counter() - start) / CALLS


DEFAULT_TASK = "mixture:digits_mlp+digits_conv+digits_autoencoder"


@dataclasses.dataclass(frozen=True)
class Size:
    task: str = DEFAULT_TASK
    rule: str = "per_parameter_mlp"
    runs_per_family: int = RUNS_PER_FAMILY
    calls: int = CALLS


SIZES = {"full": Size(), "quick": Size(task="mixture:digits_mlp+iris_logistic", calls=2),
         "tiny": Size(task="mixture:quadratic+iris_logistic", runs_per_family=2, calls=1)}


def run(out: str, quick: bool = False, command: str = "lopt bench mixture",
        progress: bool = True) -> str:
    sz = SIZES["quick" if quick else "full"]
    suite = Suite("mixture", out, sz, command, 1, progress)
    mixture = make_family(sz.task)
    rule = make_rule(sz.rule)
    theta = rule.init_meta(jax.random.PRNGKey(0))

    def compute():
        rows = []
        for family in mixture.families:
            est = PES(num_runs=sz.runs_per_family, truncation=TRUNCATION, horizon=HORIZON)
            c, t = _time_step(rule, family, est, theta, sz.calls)
            rows.append({"family": family.name, "compile_s": c, "step_s": t})
        est = PES(num_runs=sz.runs_per_family * len(mixture.families), truncation=TRUNCATION,
                  horizon=HORIZON)
        c, t = _time_step(rule, mixture, est, theta, sz.calls)
        return {"families": rows,
                "mixture": {"family": f"{sz.task} (one jitted step)", "compile_s": c,
                            "step_s": t}}

    timings = suite.cached("timings", compute)
    rows, together = timings["families"], timings["mixture"]
    alone = {"compile_s": sum(r["compile_s"] for r in rows),
             "step_s": sum(r["step_s"] for r in rows)}
    lines = ["| what | compile (s) | one outer step (s) |", "|---|---|---|"]
    for r in rows + [together]:
        lines.append(f"| {r['family']} | {r['compile_s']:.1f} | {r['step_s']:.3f} |")
    lines.append(f"| sum of the families alone (round-robin's compile; its step cost per cycle) "
                 f"| {alone['compile_s']:.1f} | {alone['step_s']:.3f} |")
    lines += ["", f"Mixture / sum of families: compile "
              f"{together['compile_s'] / alone['compile_s']:.2f}x, step "
              f"{together['step_s'] / alone['step_s']:.2f}x."]
    suite.section("Compile and step time", "\n".join(lines))
    suite.payload.update(timings, sum_of_families=alone)
    return suite.finish("The cost of meta-training on a mixture",
                        f"Rule {sz.rule}, PES, {sz.runs_per_family} runs per family, truncations "
                        f"of {TRUNCATION} steps; step time is the mean of {sz.calls} calls after "
                        "compiling, measured in this run.")
