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


# jax's PRNG runs inside jit(_uniform), jit(_normal), ... (threefry's rounds carry no name)
KINDS = (("rng", r"threefry|random_bits|jit\(_(uniform|normal|normal_real|randint|bernoulli|"
                 r"truncated_normal|split|fold_in|choice|permutation)\)|prng"),
         ("matmul", r"dot_general|conv_general|/dot\b"),
         ("data movement", r"dynamic_update_slice|dynamic_slice|concatenate|transpose|copy|"
                           r"gather|scatter|slice|broadcast_in_dim|pad|select_n"),
         ("reduction", r"reduce|argmax|argmin|cumsum"))


def op_kind(name: str, source: str) -> str:
    """The kind of an XLA operation, from the jax primitive path it came from (its
    ``op_name``), else its own name: rng, matmul, data movement, reduction, or elementwise
    (everything else: fused loops of arithmetic and transcendentals)."""
    for text in (source, name):
        for kind, pattern in KINDS:
            if text and re.search(pattern, text):
                return kind
    return "elementwise"


def _fusions_with_a_dot(hlo: str) -> set:
    """Names of the fusions whose fused computation contains a dot (XLA:CPU fuses a matmul
    with its neighbours, e.g. into a YNNPACK fusion named after the reduction it ends in)."""
    bodies, name = {}, None
    for line in hlo.splitlines():
        header = re.match(r"^%([\w.\-]+) \(", line)
        if header:
            name, bodies[header.group(1)] = header.group(1), []
        elif name is not None:
            bodies[name].append(line)
    dotted = {c for c, lines in bodies.items() if any(" dot(" in x for x in lines)}
    return {m.group(1) for m in re.finditer(r"%([\w.\-]+) = [^\n]*? fusion\([^\n]*?"
                                             r"calls=%([\w.\-]+)", hlo)
            if m.group(2) in dotted}


def memory_rate(size: int = 1 << 26) -> float:
    """GB/s of a jitted elementwise pass over ``size`` float32s (read once, written once)."""
    x = jnp.ones((size,), jnp.float32)
    # donated and fed back, as a rule's state is: a fresh 256 MB output each call would time
    # the kernel's first-touch page faults, not the memory
    step = jax.jit(lambda x: x * 1.0001, donate_argnums=0)
    t = median_time(step, (x,), 5, feed=lambda args, out: (out,))
    return 2 * 4 * size / t / 1e9


def _trace_ops(fn, args, calls: int = 2) -> dict:
    """{"ops": the 12 costliest operations, "kinds": time by ``op_kind``}: wall time (ms per
    call) of ``fn(*args)`` from a jax.profiler trace."""
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
    # Only the program's own instructions (not the runtime's wrappers around a call), and
    # not loops and conditionals, which contain the ops they run: either would count twice.
    instructions = set(re.findall(r"%([\w.\-]+) = ", hlo))
    leaf = [n for n in total if n in instructions
            and not re.match(r"^(while|cond|conditional|call)", n)]
    sources = dict(re.findall(r"%(\S+) = \S+ .*?op_name=\"([^\"]*)\"", hlo))
    kinds, kind_count = collections.Counter(), collections.Counter()
    with_dot = _fusions_with_a_dot(hlo)
    for n in leaf:
        kind = "matmul" if n in with_dot else op_kind(n, sources.get(n, ""))
        kinds[kind] += total[n]
        kind_count[kind] += count[n]
    by_kind = [{"kind": k, "ms_per_call": us / 1e3 / calls, "ops_per_call": kind_count[k] // calls}
               for k, us in kinds.most_common()]
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
    return {"ops": rows, "kinds": by_kind}


def update_profile(rule_name: str, width: int = 1024) -> dict:
    params = big_pytree(width)
    grads = jax.tree.map(lambda p: jax.random.normal(jax.random.PRNGKey(1), p.shape), params)
    rule = make_rule(rule_name)
    theta = rule.init_meta(jax.random.PRNGKey(0))
    state = rule.init(theta, params)
    fn = jax.jit(lambda s, g, p: rule.update(theta, s, g, p, jnp.float32(1.0)))
    return _trace_ops(fn, (state, grads, params))


def meta_gradient_profile(estimator: str, rule_name: str = "per_parameter_mlp") -> dict:
    rule, family = make_rule(rule_name), teacher_mlp_family()
    theta = rule.init_meta(jax.random.PRNGKey(0))
    common = dict(num_runs=16, truncation=50, horizon=1000)
    est = (TBPTT(**common) if estimator == "tbptt" else PES(sigma=0.01, **common)).build(
        rule, family)
    state = est.init(jax.random.PRNGKey(1), theta)
    return _trace_ops(jax.jit(est.grad), (theta, state, jax.random.PRNGKey(2)))


def outer_step_profile(family_name: str) -> dict:
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


def _kind_table(kinds: list) -> str:
    total = sum(k["ms_per_call"] for k in kinds) or 1.0
    lines = ["| kind | ms per call | share | operations per call |", "|---|---|---|---|"]
    lines += [f"| {k['kind']} | {k['ms_per_call']:.1f} | {k['ms_per_call'] / total:.0%} | "
              f"{k['ops_per_call']} |" for k in kinds]
    return "\n".join(lines)


def floors(result: dict) -> list:
    """What each profiled update and PES estimate could cost at this machine's rates: the
    per-coordinate network's FLOPs at the 2048² matmul rate, the bytes every step must move
    (state read and written, parameters and gradients read, the update written) at the
    elementwise memory rate, and the measured time over the larger of the two."""
    from lopt.bench.perf.costs import flops_per_coordinate
    from lopt.evaluation.metrics import state_bytes_per_parameter

    gflops = result["matmul"][-1]["gflops"]
    gbps = result["memory_gbps"]
    rows = []
    configs = [(f"update_{r}", r, big_pytree(1024), 1, 0) for r in UPDATE_RULES]
    mlp = teacher_mlp_family()
    mlp_params = mlp.build(mlp.sample(jax.random.PRNGKey(0))).init(jax.random.PRNGKey(0))
    # the task's forward and backward: 3x the forward's 2·batch·(16·32 + 32·4) FLOPs
    task_flops = 3 * 2 * 32 * (16 * 32 + 32 * 4)
    configs += [(f"pes_{r}", r, mlp_params, 2 * 16 * 50, task_flops) for r in PES_RULES]
    for key, rule_name, params, steps, extra in configs:
        rule = make_rule(rule_name)
        theta = rule.init_meta(jax.random.PRNGKey(0))
        n = sum(x.size for x in jax.tree.leaves(params))
        flops = steps * (flops_per_coordinate(theta) * n + extra)
        state = state_bytes_per_parameter(rule, theta, params)
        # PES's 676-parameter runs live in cache: no DRAM traffic to bound them
        moved = n * (2 * state + 4 * 3) if steps == 1 else 0
        ms = result[key]["ops"][0]["ms_per_call"]
        floor = max(flops / gflops / 1e6, moved / gbps / 1e6)
        rows.append({"config": key, "ms": ms, "flop_floor_ms": flops / gflops / 1e6,
                     "byte_floor_ms": moved / gbps / 1e6, "x_floor": ms / floor,
                     "ops_per_call": result[key]["ops"][1]["runs_per_call"]})
    return rows


UPDATE_RULES = ("l2l_lstm", "per_parameter_mlp", "adafac_mlp")
PES_RULES = ("per_parameter_mlp", "adafac_mlp")


def main(out: str = "benchmarks/perf") -> None:
    start = time.time()
    result = {"matmul": matmul_rates(), "memory_gbps": memory_rate(),
              "elementwise_ns": elementwise_costs()}
    for r in UPDATE_RULES:
        result[f"update_{r}"] = update_profile(r)
    for r in PES_RULES:
        result[f"pes_{r}"] = meta_gradient_profile("pes", r)
    result.update({"tbptt_teacher_mlp": meta_gradient_profile("tbptt"),
                   "outer_sum_of_squares": outer_step_profile("sum_of_squares"),
                   "outer_teacher_mlp": outer_step_profile("teacher_mlp")})
    result["floors"] = floors(result)
    result["provenance"] = provenance("python -m lopt.bench.perf.profile " + out,
                                      time.time() - start)
    write_json(os.path.join(out, "profile.json"), result)
    md = ["# Where the time goes", "", markdown_line(result["provenance"]), "",
          "## Matmul rate on the rules' shapes", "",
          "| [rows, fan_in] @ [fan_in, fan_out] | GFLOP/s |", "|---|---|"]
    md += [f"| {r['shape']} | {r['gflops']:.0f} |" for r in result["matmul"]]
    md += ["", f"Memory: {result['memory_gbps']:.1f} GB/s (a jitted elementwise pass over 256 "
           "MB, read and written).", "",
           "## Elementwise cost (ns per element, chained 10 deep on 4M floats)", "",
           "| op | ns |", "|---|---|"]
    md += [f"| {k} | {v:.2f} |" for k, v in result["elementwise_ns"].items()]
    md += ["", "## Floors", "", "Each configuration's measured time against what it could cost "
           "at this machine's rates: the per-coordinate network's FLOPs (and the task's, for "
           "PES) at the 2048² matmul rate, and the bytes each step must move (rule state read "
           "and written, parameters and gradients read, the update written) at the memory "
           "rate above. PES: 1,600 inner steps (16 pairs, truncation 50) of the 676-parameter "
           "16→32→4 MLP, whose state stays in cache (no byte floor); what bounds it instead "
           "is the count of XLA operations, each with a fixed cost of about a microsecond.",
           "",
           "| configuration | ms | FLOP floor ms | byte floor ms | × the larger floor | "
           "XLA operations per call |", "|---|---|---|---|---|---|"]
    md += [f"| {r['config']} | {r['ms']:.1f} | {r['flop_floor_ms']:.2f} | "
           f"{r['byte_floor_ms']:.2f} | {r['x_floor']:.1f} | {r['ops_per_call']} |"
           for r in result["floors"]]
    titles = {f"update_{r}": f"One `{r}` update on the 2.1M-parameter pytree"
              for r in UPDATE_RULES}
    titles.update({f"pes_{r}": f"One PES meta-gradient: {r}, 16 pairs of the 16→32→4 MLP, "
                               "truncation 50" for r in PES_RULES})
    titles.update({"tbptt_teacher_mlp": "One TBPTT meta-gradient, per_parameter_mlp, same "
                                        "setting (16 runs)",
                   "outer_sum_of_squares": "One whole outer step (lopt bench throughput): "
                                           "PES, 16 pairs, truncation 50, 10-d sum of squares",
                   "outer_teacher_mlp": "The same outer step on the 16→32→4 MLP"})
    for key, title in titles.items():
        md += ["", f"## {title}", "", "Time by kind of operation (jax.profiler; rng: the "
               "threefry draws, matmul: dots and YNNPACK fusions, data movement: slices, "
               "updates of slices, copies, concatenations, broadcasts):", "",
               _kind_table(result[key]["kinds"]), "",
               "The 12 most expensive XLA operations:", "", _table(result[key]["ops"])]
    write_text(os.path.join(out, "profile.md"), "\n".join(md) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
