"""``lopt bench accelerator``: the numbers to take in the few minutes a lent GPU or TPU gives —
per-update time of every learned rule and optax.adam at 1M, 10M and 100M parameters, the peak
memory each needs, meta-training inner steps per second on two small tasks, and a training
step of each bigger task under Adam and a learned optimizer. Sized to finish in under 8
minutes on one accelerator; ``--quick`` shrinks it for a CPU check. Every stage is cached, so
a second call after a stop resumes where the first ended.
"""
from __future__ import annotations

import dataclasses
import resource
import time

import jax
import jax.numpy as jnp
import optax

from lopt.bench.perf.probe import median_time, throughput, update_step
from lopt.bench.suite import Suite
from lopt.optax_adapter.transformation import as_optax
from lopt.rules import LEARNED, make_rule
from lopt.tasks import BIGGER, make_family

# On an accelerator the four full-size bigger tasks (the 8-minute budget); on a CPU every
# bigger task but the one that needs prepared tfds data, the meta-test's rows included.
FULL_SIZE_TASKS = BIGGER[:4]
CPU_TASKS = tuple(t for t in BIGGER if t != "cifar10_resnet")


@dataclasses.dataclass(frozen=True)
class Size:
    sizes: tuple = (1_000_000, 10_000_000, 100_000_000)  # parameters per update
    repeats: int = 5
    throughput_repeats: int = 5
    task_steps: int = 10
    rules: tuple = ("optax.adam",) + tuple(sorted(LEARNED))
    tasks: tuple = FULL_SIZE_TASKS


FULL = Size()
QUICK = Size(sizes=(65_536,), repeats=3, throughput_repeats=3, task_steps=5,
             rules=("optax.adam", "per_parameter_mlp", "celo2"), tasks=CPU_TASKS)
SIZES = {"full": FULL, "quick": QUICK}


def device_name() -> str:
    d = jax.devices()[0]
    return f"{jax.device_count()} x {getattr(d, 'device_kind', d.platform)} ({d.platform})"


def _peak_bytes():
    """The device's peak bytes in use so far (None where the backend keeps no statistics)."""
    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use")


def _params(n: int):
    """A pytree of ``n`` parameters: square matrices of at most 4096² and a remainder vector."""
    side = min(4096, int(n ** 0.5))
    count, rest = divmod(n, side * side)
    key = jax.random.PRNGKey(0)
    tree = {f"w{i}": 0.02 * jax.random.normal(jax.random.fold_in(key, i), (side, side))
            for i in range(count)}
    if rest:
        tree["rest"] = jnp.zeros((rest,))
    return tree


def update_row(name: str, n: int, repeats: int) -> dict:
    """Seconds per jitted update (state donated and fed back) of ``name`` at ``n`` parameters,
    and the peak device memory after it; an out-of-memory is a result, not a crash."""
    try:
        params = _params(n)
        grads = jax.tree.map(lambda p: jnp.ones_like(p) * 1e-3, params)
        step, state = update_step(name, params, grads)
        seconds = median_time(step, (state, grads, params), repeats,
                              feed=lambda a, out: (out[1], a[1], a[2]))
        row = {"rule": name, "params": n, "ms": 1e3 * seconds, "peak_bytes": _peak_bytes()}
    except Exception as err:  # XlaRuntimeError RESOURCE_EXHAUSTED and the like
        row = {"rule": name, "params": n, "ms": None, "error": str(err).splitlines()[0][:160]}
    jax.clear_caches()
    return row


def task_row(task: str, rule_name: str, steps: int) -> dict:
    """ms per training step (loss, gradient, update) of ``task`` under Adam or a learned rule."""
    family = make_family(task)
    inner = family.build(family.sample(jax.random.PRNGKey(0)))
    params = inner.init(jax.random.PRNGKey(1))
    if rule_name == "optax.adam":
        tx = optax.with_extra_args_support(optax.adam(1e-3))
    else:
        rule = make_rule(rule_name)
        tx = as_optax(rule, rule.init_meta(jax.random.PRNGKey(0)), num_steps=1000)

    @jax.jit
    def step(params, state, key):
        loss, grads = jax.value_and_grad(inner.loss)(params, key)
        updates, state = tx.update(grads, state, params, value=loss)
        return optax.apply_updates(params, updates), state

    seconds = median_time(step, (params, tx.init(params), jax.random.PRNGKey(2)), steps,
                          feed=lambda a, out: (out[0], out[1], jax.random.fold_in(a[2], 1)))
    return {"task": task, "rule": rule_name, "ms": 1e3 * seconds,
            "params": sum(x.size for x in jax.tree.leaves(params))}


def _throughput(size: Size) -> list:
    base = {"kind": "throughput", "rule": "per_parameter_mlp", "num_tasks": 16,
            "truncation": 50, "horizon": 1000, "repeats": size.throughput_repeats,
            "estimator": "pes"}
    return [throughput(dict(base, family=f)) for f in ("sum_of_squares", "teacher_mlp")]


def _fmt(x, digits=2):
    return "—" if x is None else f"{x:.{digits}f}"


def _plot(updates: list, size: Size, path: str) -> None:
    # Without pyplot, as lopt.evaluation.plots draws: the caller's backend stays as it was.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=120)
    ax = fig.subplots()
    for rule in size.rules:
        rows = [r for r in updates if r["rule"] == rule and r["ms"] is not None]
        ax.plot([r["params"] for r in rows], [r["ms"] for r in rows], "o-", label=rule)
    ax.set(xscale="log", yscale="log", xlabel="parameters", ylabel="ms per update",
           title=f"one update on {device_name()}")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path)


def run(out: str, quick: bool = False, command: str = "lopt bench accelerator",
        progress: bool = True) -> str:
    size = SIZES["quick" if quick else "full"]
    suite = Suite("accelerator", out, size, command, 3 + len(size.sizes), progress)
    suite.payload["device"] = device_name()
    updates = []
    for n in size.sizes:
        updates += suite.cached(f"updates_{n}", lambda n=n: [
            update_row(r, n, size.repeats) for r in size.rules])
    meta = suite.cached("throughput", lambda: _throughput(size))
    tasks = suite.cached("tasks", lambda: [task_row(t, r, size.task_steps) for t in size.tasks
                                           for r in ("optax.adam", "celo2")])
    suite.cached("host", lambda: {"max_rss_mb": resource.getrusage(
        resource.RUSAGE_SELF).ru_maxrss / 1024, "finished": time.time()})
    suite.payload.update(updates=updates, throughput=meta, tasks=tasks)

    adam = {r["params"]: r["ms"] for r in updates if r["rule"] == "optax.adam"}
    lines = [f"Device: **{device_name()}**.", "",
             "| rule | " + " | ".join(f"{n / 1e6:g}M params: ms (× adam)" for n in size.sizes)
             + " | peak GB at the largest |", "|---|" + "---|" * (len(size.sizes) + 1)]
    for rule in size.rules:
        cells, peak = [], None
        for n in size.sizes:
            row = next(r for r in updates if r["rule"] == rule and r["params"] == n)
            if row["ms"] is None:
                cells.append("failed: " + row.get("error", "")[:40])
                continue
            ratio = row["ms"] / adam[n] if adam.get(n) else None
            cells.append(f"{_fmt(row['ms'])} ({_fmt(ratio, 1)}×)")
            peak = row.get("peak_bytes")
        lines.append(f"| {rule} | " + " | ".join(cells) + f" | "
                     f"{_fmt(peak / 1e9 if peak else None, 1)} |")
    suite.section("Per-update time and peak memory", "\n".join(lines))
    rows = ["| task | estimator | inner steps/s |", "|---|---|---|"]
    rows += [f"| {r['family']} | {r['estimator']} (16 pairs, truncation 50) | "
             f"{r['inner_steps_per_s']:,.0f} |" for r in meta]
    suite.section("Meta-training throughput (per_parameter_mlp)", "\n".join(rows))
    rows = ["| task | parameters | rule | ms / training step |", "|---|---|---|---|"]
    rows += [f"| {r['task']} | {r['params']:,} | {r['rule']} | {_fmt(r['ms'], 1)} |"
             for r in tasks]
    suite.section("The bigger tasks: one training step", "\n".join(rows))
    _plot(updates, size, suite.figure("update_time_by_size.png"))
    return suite.finish("Accelerator numbers: updates at scale, meta-training, bigger tasks",
                        "Every time is a median over repeated jitted calls after a compiling "
                        "one; ratios are formed within this run.")
