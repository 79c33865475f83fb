"""Tables, targets and figures of ``lopt bench perf`` from its measured stages."""
from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

MiB = 2**20
# The performance targets lopt set itself (results.md opens with them, met or missed).
MLP_FLOOR_X, HIER_OVER_MLP, LSTM_FLOOR_X, LSTM_SPEEDUP = 10.0, 1.3, 8.0, 4.0
THROUGHPUT_SPEEDUP, OVERHEAD, MEMORY_X, ADAM_X = 2.0, 0.6, 2.0, 1.05


def intro(size) -> str:
    return (f"Per-update costs on a pytree of two {size.width}×{size.width} matrices and a "
            f"{size.width} bias ({2 * size.width**2 + size.width:,} parameters), jitted, state "
            "donated, median of "
            f"{size.repeats} rounds after a compiling call; in a round every rule (and "
            "optax.adam) makes one call in turn, so a change of load hits all of them. A rule's "
            "FLOP floor is its "
            "per-coordinate network's matmul FLOPs (2·fan_in·fan_out over its weight matrices, "
            "as the paper defines the network) times the parameters, at the rate of a jitted "
            "2048×2048 float32 matmul measured in the same process. `baseline` is commit "
            "`lopt.bench.perf.overview.BASELINE_COMMIT`, the code before the speed work, run in "
            "the same stage; today's code runs before and after it and its numbers are the "
            "mean of the two.")


def _by(results: list, key: str) -> dict:
    return {r.get(key, r["kind"]): r for r in results}


def _mean_ratio(runs: list, fn) -> float:
    return float(np.mean([fn(r) for r in runs]))


def _update_rows(updates: dict, flops: dict, num_params: int) -> list:
    runs = [_by(updates[k], "rule") for k in ("head", "head_again") if k in updates]
    base = _by(updates["baseline"], "rule") if "baseline" in updates else None
    rows = []
    for name in [r for r in runs[0] if r not in ("matmul", "optax.adam")]:
        ms = _mean_ratio(runs, lambda r: 1e3 * r[name]["seconds"])  # noqa: B023
        x_adam = _mean_ratio(runs, lambda r: r[name]["seconds"] / r["optax.adam"]["seconds"])  # noqa: B023
        floor_ms = _mean_ratio(runs, lambda r: 1e3 * flops.get(name, 0) * num_params  # noqa: B023
                               / (r["matmul"]["gflops"] * 1e9))
        x_floor = (_mean_ratio(runs, lambda r: r[name]["seconds"] * r["matmul"]["gflops"] * 1e9  # noqa: B023
                               / (flops[name] * num_params)) if flops.get(name) else None)  # noqa: B023
        # A rule added after the baseline commit has no baseline row.
        base_ms = 1e3 * base[name]["seconds"] if base and name in base else None
        rows.append({"rule": name, "ms": ms, "x_adam": x_adam, "floor_ms": floor_ms,
                     "x_floor": x_floor, "baseline_ms": base_ms,
                     "speedup": base_ms / ms if base_ms else None})
    return rows


def _fmt(x, digits=1):
    if x is None:
        return "—"
    return f"{x:,.{digits}f}"


def _throughput_rows(throughput: dict) -> list:
    def key(r):
        return (r["rule"], r["family"], r["estimator"])

    runs = [{key(r): r for r in throughput[k]} for k in ("head", "head_again") if k in throughput]
    base = {key(r): r for r in throughput["baseline"]} if "baseline" in throughput else None
    plain = {"tbptt": "unroll", "pes": "unroll:reparam", "es": "unroll:reparam",
             "reparam": "unroll:reparam"}
    rows = []
    for k in runs[0]:
        rate = _mean_ratio(runs, lambda r: r[k]["inner_steps_per_s"])  # noqa: B023
        ref = (k[0], k[1], plain.get(k[2], ""))
        over = (_mean_ratio(runs, lambda r: r[k]["inner_steps_per_s"]  # noqa: B023
                            / r[ref]["inner_steps_per_s"]) if ref in runs[0] else None)  # noqa: B023
        b = base[k]["inner_steps_per_s"] if base else None
        b_over = (b / base[ref]["inner_steps_per_s"] if base and ref in base else None)
        rows.append({"rule": k[0], "family": k[1], "estimator": k[2],
                     "runs": runs[0][k]["runs"], "truncation": runs[0][k]["truncation"],
                     "inner_steps_per_s": rate, "baseline": b,
                     "speedup": rate / b if b else None, "over_unroll": over,
                     "baseline_over_unroll": b_over})
    return rows


def _check(ok) -> str:
    return "—" if ok is None else ("met" if ok else "**missed**")


def sections(suite, updates, throughput, memory, adam_step, state, flops, num_params):
    upd = {r["rule"]: r for r in _update_rows(updates, flops, num_params)}
    thr = _throughput_rows(throughput)
    suite.payload["update_table"] = list(upd.values())
    suite.payload["throughput_table"] = thr
    mem = {(r["truncation"], r["remat"]): r for r in memory}
    ks = sorted({r["truncation"] for r in memory})
    mem_x = {m: mem[(ks[-1], m)]["temp_bytes"] / mem[(ks[0], m)]["temp_bytes"]
             for m in ("none", "step", "nested", "auto")}
    mlp, hier = upd["per_parameter_mlp"], upd["hierarchical"]
    targets = [
        ("per_parameter_mlp ≤ 10× its FLOP floor", f"{mlp['x_floor']:.1f}×",
         mlp["x_floor"] <= MLP_FLOOR_X),
        ("hierarchical ≤ 1.3× per_parameter_mlp", f"{hier['ms'] / mlp['ms']:.2f}×",
         hier["ms"] / mlp["ms"] <= HIER_OVER_MLP)]
    for name in ("l2l_lstm", "rnnprop", "hyperadam"):
        r = upd[name]
        targets.append((f"{name} ≤ 8× its FLOP floor", f"{r['x_floor']:.1f}×",
                        r["x_floor"] <= LSTM_FLOOR_X))
        targets.append((f"{name} ≥ 4× faster than the baseline", f"{_fmt(r['speedup'], 2)}×",
                        None if r["speedup"] is None else r["speedup"] >= LSTM_SPEEDUP))
    for r in thr:
        if r["estimator"] == "pes":
            targets.append((f"PES, {r['rule']} on {r['family']}: ≥ 2× the baseline's inner "
                            "steps/s",
                            f"{_fmt(r['speedup'], 2)}×",
                            None if r["speedup"] is None else r["speedup"] >= THROUGHPUT_SPEEDUP))
        if r["estimator"] in ("tbptt", "reparam"):
            targets.append((f"{r['estimator']}, {r['rule']} on {r['family']}: ≥ 0.6 of a "
                            "plain unroll",
                            _fmt(r["over_unroll"], 2), r["over_unroll"] >= OVERHEAD))
    targets.append((f"TBPTT temp memory at truncation {ks[-1]} ≤ 2× truncation {ks[0]} "
                    "(remat auto, the default)",
                    f"{mem_x['auto']:.2f}× (none: {mem_x['none']:.1f}×, step: "
                    f"{mem_x['step']:.1f}×, nested: {mem_x['nested']:.2f}×)",
                    mem_x["auto"] <= MEMORY_X))
    targets.append(("lopt adam ≤ 1.05× optax.adam in a training step",
                    f"{adam_step['ratio']:.3f}×", adam_step["ratio"] <= ADAM_X))
    suite.payload["targets"] = [{"target": t, "measured": m, "met": ok} for t, m, ok in targets]
    suite.section("Targets", "| target | measured | |\n|---|---|---|\n" + "\n".join(
        f"| {t} | {m} | {_check(ok)} |" for t, m, ok in targets))

    lines = ["| rule | ms per update | × optax.adam | FLOP floor ms | × floor | baseline ms "
             "| speedup |", "|---|---|---|---|---|---|---|"]
    for r in upd.values():
        lines.append(f"| {r['rule']} | {_fmt(r['ms'])} | {_fmt(r['x_adam'])} | "
                     f"{_fmt(r['floor_ms'] or None)} | {_fmt(r['x_floor'])} | "
                     f"{_fmt(r['baseline_ms'])} | {_fmt(r['speedup'], 2)} |")
    gflops = [x["gflops"] for k in ("head", "head_again") if k in updates
              for x in updates[k] if x["kind"] == "matmul"]
    adam_ms = [1e3 * x["seconds"] for k in ("head", "head_again") if k in updates
               for x in updates[k] if x.get("rule") == "optax.adam"]
    suite.section("Per-update time", "\n".join(lines) + (
        f"\n\nMatmul ceiling: {', '.join(f'{g:.0f}' for g in gflops)} GFLOP/s (one per "
        f"process); optax.adam: {', '.join(f'{a:.1f}' for a in adam_ms)} ms per update."))

    lines = ["| rule | task | estimator | runs | truncation | inner steps/s | baseline | speedup "
             "| ÷ plain unroll | baseline ÷ unroll |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in thr:
        lines.append(f"| {r['rule']} | {r['family']} | {r['estimator']} | {r['runs']} | "
                     f"{r['truncation']} | "
                     f"{_fmt(r['inner_steps_per_s'], 0)} | {_fmt(r['baseline'], 0)} | "
                     f"{_fmt(r['speedup'], 2)} | {_fmt(r['over_unroll'], 2)} | "
                     f"{_fmt(r['baseline_over_unroll'], 2)} |")
    suite.section("Meta-training throughput", "\n".join(lines) + (
        "\n\nInner steps per second of one jitted meta-gradient (runs × truncation over its "
        "wall time); `unroll` advances the same runs without a meta-gradient; `unroll:reparam` "
        "is the unroll of the antithetic estimators' runs (both halves of every pair)."))

    lines = ["| truncation | remat | temp MiB | arguments MiB | s per meta-gradient |",
             "|---|---|---|---|---|"]
    for r in memory:
        lines.append(f"| {r['truncation']} | {r['remat']} | {r['temp_bytes'] / MiB:,.1f} | "
                     f"{r['argument_bytes'] / MiB:,.1f} | {r['seconds_per_meta_gradient']:.3f} |")
    cost = {k: mem[(k, "auto")]["seconds_per_meta_gradient"]
            / mem[(k, "none")]["seconds_per_meta_gradient"] for k in ks}
    suite.section("TBPTT memory against truncation", "\n".join(lines) + (
        f"\n\n`l2l_lstm` on `digits_mlp`, {memory[0]['num_tasks']} instances; XLA's buffer "
        "plan of the compiled meta-gradient (temporaries: what backprop stores). Time of "
        "`remat=\"auto\"` (the default) over none: "
        + ", ".join(f"{cost[k]:.2f}× at {k}" for k in ks) + "."))

    suite.section("Adam through lopt", (
        f"One jitted training step (loss, gradient, update, apply) of a two-layer MLP on the "
        f"same pytree: optax.adam {1e3 * adam_step['optax.adam']:.2f} ms, "
        f"`lopt.as_optax(lopt.rules.adam())` {1e3 * adam_step['lopt adam']:.2f} ms: "
        f"{adam_step['ratio']:.3f}×."))

    lines = ["| rule | state bytes per parameter | network FLOPs per coordinate |",
             "|---|---|---|"]
    for name, b in state.items():
        lines.append(f"| {name} | {b:.1f} | {flops.get(name, '—')} |")
    suite.section("Optimizer state and network size", "\n".join(lines))
    _figures(suite, upd, memory)


def _figures(suite, upd, memory):

    rows = [r for r in upd.values()]
    fig = Figure(figsize=(8, 4))
    ax = fig.subplots()
    y = np.arange(len(rows))
    ax.barh(y - 0.2, [r["x_adam"] for r in rows], 0.4, label="today")
    base = [r["baseline_ms"] / r["ms"] * r["x_adam"] if r["baseline_ms"] else 0 for r in rows]
    ax.barh(y + 0.2, base, 0.4, label="baseline")
    ax.set_yticks(y, [r["rule"] for r in rows])
    ax.set_xscale("log")
    ax.set_xlabel("time per update ÷ optax.adam")
    ax.legend()
    fig.tight_layout()
    fig.savefig(suite.figure("update_time.png"), dpi=110)

    fig = Figure(figsize=(5, 3.5))
    ax = fig.subplots()
    for remat in ("none", "step", "nested", "auto"):
        pts = [(r["truncation"], r["temp_bytes"] / MiB) for r in memory if r["remat"] == remat]
        ax.plot(*zip(*pts), marker="o", label=f"remat {remat}")
    ax.set_xlabel("truncation")
    ax.set_ylabel("temporary MiB")
    ax.legend()
    fig.tight_layout()
    fig.savefig(suite.figure("tbptt_memory.png"), dpi=110)
