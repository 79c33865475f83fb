"""``lopt bench tensor_parallel``: meta-training a tensor-parallel transformer LM on this
machine's devices laid out as ``runs × model`` meshes, one row per model-axis size: the inner
runs' state each device holds (in all, and per inner run it holds part of: what bounds the
model a device can train), the outer step's time and its first meta-losses (equal across
layouts up to float round-off: the layout changes where arrays live, not what is computed).

Needs at least 2 devices (accelerators, or CPU devices forced with
``XLA_FLAGS=--xla_force_host_platform_device_count=N``; on forced CPU devices, which share the
machine's cores, the memory column is what the layout buys and the time column is not a
speed-up)."""
from __future__ import annotations

import dataclasses
import time

import jax

from lopt.bench.perf.probe import median_time
from lopt.bench.suite import Suite
from lopt.files.errors import UsageError


@dataclasses.dataclass(frozen=True)
class Size:
    task: str
    num_tasks: int
    truncation: int
    horizon: int
    repeats: int


FULL = Size("pydocs_transformer_4l_tp", num_tasks=8, truncation=10, horizon=100, repeats=5)
QUICK = Size("transformer_lm_tp", num_tasks=4, truncation=5, horizon=20, repeats=3)
SIZES = {"full": FULL, "quick": QUICK}
RULE = "per_parameter_mlp"


def layouts(devices: int, num_tasks: int) -> list:
    """The model-axis sizes to measure: powers of two dividing the device count whose blocks
    (devices / model) split the runs evenly."""
    out, m = [], 1
    while m <= devices:
        if devices % m == 0 and num_tasks % (devices // m) == 0:
            out.append(m)
        m *= 2
    return out


def _device_bytes(tree) -> int:
    """Bytes of ``tree``'s arrays on the first device."""
    first = jax.devices()[0]
    return sum(s.data.nbytes for x in jax.tree.leaves(tree) for s in x.addressable_shards
               if s.device == first)


def layout_row(size: Size, model: int) -> dict:
    """One outer step of PES meta-training on a runs × model mesh over every device."""
    from lopt.outer import PES, default_meta_optimizer
    from lopt.outer.placement import Placement
    from lopt.outer.train import RunOptions, _build, _initial_state, make_outer_step
    from lopt.rules import make_rule
    from lopt.tasks import make_family

    rule, family = make_rule(RULE), make_family(size.task)
    estimator = PES(num_runs=size.num_tasks, truncation=size.truncation, horizon=size.horizon)
    place = Placement(jax.devices(), size.num_tasks, model=model)
    est = _build(estimator, rule, family, place)
    meta_opt = default_meta_optimizer()
    state = _initial_state(rule, est, RunOptions(num_steps=1, seed=0), meta_opt, place)
    start = time.perf_counter()
    step = place.compile(make_outer_step(est, meta_opt), state)
    state = place.to_devices(state)
    state, metrics = step(state)
    jax.block_until_ready(state)
    compile_s = time.perf_counter() - start
    losses = [float(place.first(metrics["meta_loss"]))]
    state, metrics = step(state)
    losses.append(float(place.first(metrics["meta_loss"])))
    held = _device_bytes(state.est_state)
    seconds = median_time(lambda s: step(s)[0], (state,), size.repeats,
                          feed=lambda a, out: (out,))
    runs = 2 * size.num_tasks  # antithetic pairs
    return {"model": model, "blocks": place.mesh.shape[place.AXIS],
            "state_bytes_per_device": held,
            "runs": runs, "seconds_per_outer_step": seconds, "compile_s": compile_s,
            "inner_steps_per_s": runs * size.truncation / seconds, "meta_loss": losses}


def run(out: str, quick: bool = False, command: str = "lopt bench tensor_parallel",
        progress: bool = True) -> str:
    size = SIZES["quick" if quick else "full"]
    n = jax.device_count()
    if n < 2:
        raise UsageError(f"tensor_parallel needs at least 2 devices, this machine has {n}; on a "
                         "CPU force some with XLA_FLAGS=--xla_force_host_platform_device_count=4")
    models = layouts(n, size.num_tasks)
    suite = Suite("tensor_parallel", out, size, command, len(models), progress)
    rows = [suite.cached(f"model_{m}_of_{n}", lambda m=m: layout_row(size, m)) for m in models]
    suite.payload.update(rows=rows, devices=n, device=str(jax.devices()[0].device_kind))
    base = rows[0]
    lines = [f"{n} × {jax.devices()[0].device_kind} devices; task `{size.task}`, {RULE}, PES "
             f"({size.num_tasks} pairs, truncation {size.truncation}).", "",
             "| mesh (runs × model) | inner state per device (MB) | per inner run (MB) | "
             "× model 1 | s / outer step | inner steps/s | compile s | meta-loss, steps 1-2 |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        mb = r["state_bytes_per_device"] / 1e6
        lines.append(f"| {r['blocks']} × {r['model']} | {mb:.2f} | {_per_run(r) / 1e6:.3f} | "
                     f"{_per_run(r) / _per_run(base):.2f} | "
                     f"{r['seconds_per_outer_step']:.3f} | {r['inner_steps_per_s']:,.0f} | "
                     f"{r['compile_s']:.0f} | "
                     + ", ".join(f"{v:.6f}" for v in r["meta_loss"]) + " |")
    spread = max(abs(a - b) for r in rows for a, b in zip(r["meta_loss"], base["meta_loss"]))
    lines += ["", f"Largest meta-loss difference from the 1-model-device layout: {spread:.1e}."]
    suite.section("Meta-training on runs × model meshes", "\n".join(lines))
    _plot(rows, suite.figure("state_per_device.png"))
    return suite.finish("Tensor-parallel meta-training: the inner runs split over a model axis",
                        "Each row lays the same devices out as a different mesh; the "
                        "runs and the rule are the same, so the meta-losses agree and what "
                        "changes is where the inner runs' state lives.")


def _per_run(row: dict) -> float:
    """A device's state bytes per inner run of its block (each block holds runs / blocks)."""
    return row["state_bytes_per_device"] / (row["runs"] / row["blocks"])


def _plot(rows: list, path: str) -> None:
    # Without pyplot, as lopt.evaluation.plots draws: the caller's backend stays as it was.
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3.5), dpi=120)
    ax = fig.subplots()
    ax.bar([f"{r['blocks']}×{r['model']}" for r in rows], [_per_run(r) / 1e6 for r in rows])
    ax.set(xlabel="mesh (runs × model)", ylabel="MB per inner run on one device")
    fig.tight_layout()
    fig.savefig(path)

