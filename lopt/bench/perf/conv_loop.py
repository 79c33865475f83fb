"""``lopt bench conv_loop``: what ``lopt.tasks.loop_conv`` buys, the convolution whose gradient
is written as forward convolutions because XLA:CPU runs lax's backward convolutions many
times slower inside ``lax.scan`` (jax#12868).

Two measurements: one convolution's gradient step, with lax's VJP and with loop_conv's, inside
a 10-step ``lax.scan`` and (lax's) outside any loop; and the conv tasks' inner steps as
``lopt.evaluation.loss_curves`` runs them, today's code in turns with the commit before
loop_conv (fresh processes, alternating, as ``lopt bench throughput`` does).
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from lopt.bench.perf.probe import median_time
from lopt.bench.perf.throughput import alternate
from lopt.bench.suite import Suite
from lopt.tasks.loop_conv import conv_general_dilated

BASELINE_COMMIT = "fa6b1d8"  # main before lopt.tasks.loop_conv
LAYERS = (  # name, input shape, kernel shape, strides
    ("3x3, 16 -> 16 channels, 64 images 28x28", (64, 28, 28, 16), (3, 3, 16, 16), (1, 1)),
    ("3x3 stride 2, 16 -> 32 channels, 64 images 28x28", (64, 28, 28, 16), (3, 3, 16, 32),
     (2, 2)),
    ("1-D width 5 stride 2, 16 -> 16 channels, 64 signals of 40", (64, 40, 16), (5, 16, 16),
     (2,)),
)


@dataclasses.dataclass(frozen=True)
class Size:
    tasks: tuple  # (family, runs, steps)
    rounds: int
    repeats: int
    loop: int


FULL = Size((("digits_conv", 4, 20), ("mnist_conv_fc", 4, 20), ("mnist1d_conv", 4, 20),
             ("shapes16_conv_reparam", 4, 20), ("mnist_resnet", 1, 3)), rounds=4, repeats=5,
            loop=10)
QUICK = Size((("digits_conv", 2, 5), ("mnist1d_conv", 2, 5)), rounds=1, repeats=2, loop=3)
SIZES = {"full": FULL, "quick": QUICK}


def layer_row(name, x_shape, k_shape, strides, size: Size) -> dict:
    """Milliseconds per gradient step of one convolution (input and kernel gradients)."""
    x = jax.random.normal(jax.random.PRNGKey(0), x_shape)
    k = 0.01 * jax.random.normal(jax.random.PRNGKey(1), k_shape)
    spatial = "HW"[:len(x_shape) - 2]
    dims = lax.conv_dimension_numbers(x_shape, k_shape, ("N" + spatial + "C", spatial + "IO",
                                                         "N" + spatial + "C"))

    def step_with(conv):
        def step(carry, _):
            x, k = carry
            gx, gk = jax.grad(lambda x, k: jnp.sum(conv(x, k, strides, "SAME",
                                                        dimension_numbers=dims) ** 2),
                              argnums=(0, 1))(x, k)
            return (x - 1e-6 * gx, k - 1e-6 * gk), None
        return step

    def in_loop(conv):
        fn = jax.jit(lambda c: lax.scan(step_with(conv), c, None, size.loop)[0])
        return median_time(fn, ((x, k),), size.repeats) / size.loop * 1e3

    one = jax.jit(lambda c: step_with(lax.conv_general_dilated)(c, None)[0])
    outside = median_time(one, ((x, k),), size.repeats) * 1e3
    lax_ms, ours_ms = in_loop(lax.conv_general_dilated), in_loop(conv_general_dilated)
    return {"layer": name, "lax_in_loop_ms": lax_ms, "loop_conv_in_loop_ms": ours_ms,
            "lax_outside_loop_ms": outside, "speedup_in_loop": lax_ms / ours_ms}


def task_turns(size: Size) -> dict:
    jobs = [{"kind": "curve", "family": f, "num_tasks": n, "steps": s, "repeats": size.repeats}
            for f, n, s in size.tasks]
    return alternate(jobs, size.rounds, BASELINE_COMMIT, "conv_loop")


def run(out: str, quick: bool = False, command: str = "lopt bench conv_loop",
        progress: bool = True) -> str:
    size = SIZES["quick" if quick else "full"]
    suite = Suite("conv_loop", out, size, command, len(LAYERS) + 1, progress)
    layers = [suite.cached(f"layer_{i}", lambda c=c: layer_row(*c, size))
              for i, c in enumerate(LAYERS)]
    lines = ["| convolution | lax, in a scan (ms) | loop_conv, in a scan (ms) | lax, no loop "
             "(ms) | speed-up in a scan |", "|---|---|---|---|---|"]
    lines += [f"| {r['layer']} | {r['lax_in_loop_ms']:.2f} | {r['loop_conv_in_loop_ms']:.2f} | "
              f"{r['lax_outside_loop_ms']:.2f} | {r['speedup_in_loop']:.1f}x |" for r in layers]
    suite.section("One convolution's gradient step",
                  f"Median of {size.repeats} calls of a {size.loop}-step `lax.scan` (per step), "
                  "input and kernel gradients of sum(conv(x, k)^2); 'no loop' is lax's step "
                  "jitted alone.\n\n" + "\n".join(lines) + "\n")
    turns = suite.cached("tasks", lambda: task_turns(size))
    rows = []
    for i, (family, n, steps) in enumerate(size.tasks):
        head = np.array([r[i]["seconds_per_run_step"] for r in turns["head"]]) * 1e3
        base = np.array([r[i]["seconds_per_run_step"] for r in turns["baseline"]]) * 1e3
        rows.append({"family": family, "runs": n, "steps": steps,
                     "head_ms": float(np.median(head)), "baseline_ms": float(np.median(base)),
                     "speedup": float(np.median(base / head))})
    lines = ["| task | runs × steps | before (ms / run step) | now | speed-up |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['family']} | {r['runs']} × {r['steps']} | {r['baseline_ms']:.1f} | "
              f"{r['head_ms']:.1f} | {r['speedup']:.1f}x |" for r in rows]
    suite.section("Conv tasks in the unroll",
                  f"Adam through `loss_curves`; medians over {size.rounds} rounds of fresh "
                  f"processes alternating between commit {BASELINE_COMMIT} (before) and this "
                  "checkout; the speed-up is the median of the per-round ratios. The ResNet "
                  "also steps its runs one at a time now (TaskFamily.sequential_runs).\n\n"
                  + "\n".join(lines) + "\n")
    suite.payload.update(layers=layers, tasks=rows, turns=turns, baseline=BASELINE_COMMIT)
    return suite.finish("Convolutions inside lax.scan on XLA:CPU",
                        "lopt.tasks.loop_conv against lax's convolution gradient, and the conv "
                        "tasks against the commit before it.")
