"""The profiles behind ``docs/performance.md``: where an update's and a meta-gradient's time
goes, the rate XLA's CPU backend reaches on the rules' own matmul shapes, and its cost per
element of the transcendentals the rules use. ``python -m lopt.bench.perf.profile [OUT]``
writes ``OUT/profile.md`` and ``OUT/profile.json`` (OUT: benchmarks/perf).
"""
from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time

import jax
import jax.numpy as jnp

from lopt.bench.perf.probe import big_pytree, median_time, teacher_mlp_family
from lopt.files.atomic import write_json, write_text
from lopt.files.provenance import markdown_line, provenance
from lopt.outer import PES, TBPTT
from lopt.rules import make_rule

# [rows, fan_in] @ [fan_in, fan_out] shapes of the rules' layers, per chunk of coordinates.
MATMUL_SHAPES = ((16384, 40, 80), (16384, 20, 80), (16384, 11, 32), (16384, 32, 2),
                 (2048, 2048, 2048))
ELEMENTWISE = {"multiply": lambda x: x * 1.0001, "tanh": jnp.tanh,
               "logistic": jax.nn.sigmoid, "exp": lambda x: jnp.exp(-x * x)}


def matmul_rates() -> list:
    rows = []
    for n, k, m in MATMUL_SHAPES:
        x = jax.random.normal(jax.random.PRNGKey(0), (n, k))
        w = jax.random.normal(jax.random.PRNGKey(1), (k, m))
        t = median_time(jax.jit(lambda x, w: x @ w), (x, w), 7)
        rows.append({"shape": [n, k, m], "gflops": 2 * n * k * m / t / 1e9})
    return rows


def elementwise_costs(size: int = 1 << 22, depth: int = 10) -> dict:
    """ns per element of each op, from ``depth`` chained applications (so the op, not memory
    traffic, is what is timed)."""
    x = jax.random.normal(jax.random.PRNGKey(0), (size,))
    out = {}
    for name, op in ELEMENTWISE.items():
        def chain(x, op=op):
            for _ in range(depth):
                x = op(x)
            return x

        out[name] = median_time(jax.jit(chain), (x,), 5) / (size * depth) * 1e9
    return out


def _trace_ops(fn, args, calls: int = 2) -> list:
    """Per-operation wall time (ms per call) of ``fn(*args)`` from a jax.profiler trace."""
    jax.block_until_ready(fn(*args))
    folder = tempfile.mkdtemp(prefix="lopt_trace_")
    jax.profiler.start_trace(folder, create_perfetto_trace=True)
    for _ in range(calls):
        jax.block_until_ready(fn(*args))
    jax.profiler.stop_trace()
    path = max(glob.glob(os.path.join(folder, "**", "*.trace.json.gz"), recursive=True),
               key=os.path.getmtime)
    with gzip.open(path) as f:
        events = json.load(f)
    events = events["traceEvents"] if isinstance(events, dict) else events
    total, count = collections.Counter(), collections.Counter()
    for e in events:
        name = e.get("name", "")
        if e.get("ph") == "X" and not re.match(r"^(\$|Thunk|Pjit|Slinky)", name):
            total[name] += e.get("dur", 0)
            count[name] += 1
    hlo = fn.lower(*args).compile().as_text()
    # Loops and conditionals contain the ops they run: summing them would count time twice.
    leaf = [n for n in total if not re.match(r"^(while|cond|conditional|call)", n)]
    rows = [{"op": "(one call, wall time)", "ms_per_call": 1e3 * median_time(fn, args, 5),
             "runs_per_call": 1, "shape": "", "source": ""},
            {"op": "(operations run inside it: their summed time, under tracing)", "ms_per_call":
             sum(total[n] for n in leaf) / 1e3 / calls,
             "runs_per_call": sum(count[n] for n in leaf) // calls, "shape": "", "source": ""}]
    for name, us in total.most_common(12):
        m = re.search(r"%" + re.escape(name) + r" = (\S+) .*?op_name=\"([^\"]*)\"", hlo)
        rows.append({"op": name, "ms_per_call": us / 1e3 / calls, "runs_per_call": count[name]
                     // calls, "shape": m.group(1) if m else "",
                     "source": m.group(2).split("/")[-1] if m else ""})
    return rows


def update_profile(rule_name: str, width: int = 1024) -> list:
    params = big_pytree(width)
    grads = jax.tree.map(lambda p: jax.random.normal(jax.random.PRNGKey(1), p.shape), params)
    rule = make_rule(rule_name)
    theta = rule.init_meta(jax.random.PRNGKey(0))
    state = rule.init(theta, params)
    fn = jax.jit(lambda s, g, p: rule.update(theta, s, g, p, jnp.float32(1.0)))
    return _trace_ops(fn, (state, grads, params))


def meta_gradient_profile(estimator: str) -> list:
    rule, family = make_rule("per_parameter_mlp"), teacher_mlp_family()
    theta = rule.init_meta(jax.random.PRNGKey(0))
    common = dict(num_tasks=16, truncation=50, horizon=1000)
    est = (TBPTT(**common) if estimator == "tbptt" else PES(sigma=0.01, **common)).build(
        rule, family)
    state = est.init(jax.random.PRNGKey(1), theta)
    return _trace_ops(jax.jit(est.grad), (theta, state, jax.random.PRNGKey(2)))


def outer_step_profile(family_name: str) -> list:
    """The whole outer step of ``lopt bench throughput``'s configuration on ``family_name``
    (sum_of_squares or teacher_mlp), compiled as ``lopt.outer.train`` compiles it."""
    import optax

    from lopt.bench.perf.probe import FAMILIES
    from lopt.outer import placement
    from lopt.outer.train import TrainState, make_outer_step

    rule, family = make_rule("per_parameter_mlp"), FAMILIES[family_name]()
    place = placement.Placement(placement.resolve_devices(None), 16)
    est = PES(num_runs=16, truncation=50, horizon=100, max_horizon=1000, sigma=0.01).build(
        rule, family, axis_name=place.AXIS)
    meta_opt = optax.adam(3e-4)
    theta = rule.init_meta(jax.random.PRNGKey(0))
    state = TrainState(theta, meta_opt.init(theta), est.init(jax.random.PRNGKey(1), theta),
                       jax.random.PRNGKey(2), jnp.zeros((), jnp.int32))
    fn = place.compile(make_outer_step(est, meta_opt), state, donate=False)
    return _trace_ops(fn, (place.to_devices(state),))


def _table(rows: list) -> str:
    lines = ["| operation | ms per call | times per call | result | from |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['op']} | {r['ms_per_call']:.1f} | {r['runs_per_call']} | `{r['shape']}` | "
              f"{r['source']} |" for r in rows]
    return "\n".join(lines)


def main(out: str = "benchmarks/perf") -> None:
    start = time.time()
    result = {"matmul": matmul_rates(), "elementwise_ns": elementwise_costs(),
              "update_l2l_lstm": update_profile("l2l_lstm"),
              "update_per_parameter_mlp": update_profile("per_parameter_mlp"),
              "pes_teacher_mlp": meta_gradient_profile("pes"),
              "tbptt_teacher_mlp": meta_gradient_profile("tbptt"),
              "outer_sum_of_squares": outer_step_profile("sum_of_squares"),
              "outer_teacher_mlp": outer_step_profile("teacher_mlp")}
    result["provenance"] = provenance("python -m lopt.bench.perf.profile " + out,
                                      time.time() - start)
    write_json(os.path.join(out, "profile.json"), result)
    md = ["# Where the time goes", "", markdown_line(result["provenance"]), "",
          "## Matmul rate on the rules' shapes", "",
          "| [rows, fan_in] @ [fan_in, fan_out] | GFLOP/s |", "|---|---|"]
    md += [f"| {r['shape']} | {r['gflops']:.0f} |" for r in result["matmul"]]
    md += ["", "## Elementwise cost (ns per element, chained 10 deep on 4M floats)", "",
           "| op | ns |", "|---|---|"]
    md += [f"| {k} | {v:.2f} |" for k, v in result["elementwise_ns"].items()]
    titles = {"update_l2l_lstm": "One `l2l_lstm` update on the 2.1M-parameter pytree",
              "update_per_parameter_mlp": "One `per_parameter_mlp` update on the same pytree",
              "pes_teacher_mlp": "One PES meta-gradient: per_parameter_mlp, 16 pairs of the "
                                 "16→32→4 MLP, truncation 50",
              "tbptt_teacher_mlp": "One TBPTT meta-gradient, same setting (16 runs)",
              "outer_sum_of_squares": "One whole outer step (lopt bench throughput): PES, "
                                      "16 pairs, truncation 50, 10-d sum of squares",
              "outer_teacher_mlp": "The same outer step on the 16→32→4 MLP"}
    for key, title in titles.items():
        md += ["", f"## {title}", "", "The 12 most expensive XLA operations (jax.profiler).", "",
               _table(result[key])]
    write_text(os.path.join(out, "profile.md"), "\n".join(md) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
