"""``lopt bench torch_step``: what lopt.torch's optimizers cost per update against
``torch.optim.AdamW`` on this CPU, on MLPs of about 1M and 10M parameters, and against lopt's
JAX update of the same rule (``lopt.as_optax`` under ``jax.jit``) on the same shapes (issue 40,
item 4). Only the update is timed (gradients fixed), optimizers taking turns round by round;
the ratios are medians of each round's time over AdamW's in the same round. Needs the torch
extra."""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from lopt.bench.suite import Suite
from lopt.files.errors import UsageError

RULES = ("celo2_graft", "adafac_tiny")
NUM_STEPS = 1000


@dataclasses.dataclass(frozen=True)
class Size:
    widths: tuple  # hidden width of a 3-hidden-layer MLP on 784 inputs, one model per width
    rounds: int
    steps: int  # timed updates per round


# 784-1024-1024-10 ≈ 1.9M, 784-2048-2048-2048-10 ≈ 10M parameters
SIZES = {"full": Size(((1024, 2), (2048, 3)), 5, 10), "quick": Size(((64, 2),), 2, 2)}


def _shapes(width: int, hidden: int) -> list:
    dims = [784] + [width] * hidden + [10]
    return [s for a, b in zip(dims[:-1], dims[1:]) for s in ((b, a), (b,))]


def _timers(shapes: list) -> dict:
    """{optimizer: one update, timed as a callable}, torch ones and lopt's JAX ones."""
    import jax
    import torch

    import lopt
    import lopt.torch

    gen = torch.Generator().manual_seed(0)
    out = {}

    def torch_timer(make):
        params = [torch.nn.Parameter(torch.randn(s, generator=gen) * 0.05) for s in shapes]
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen) * 1e-2
        opt = make(params)
        return opt.step

    out["torch.optim.AdamW"] = torch_timer(lambda p: torch.optim.AdamW(p, lr=1e-3))
    for rule in RULES:
        out[f"lopt.torch {rule}"] = torch_timer(
            lambda p, r=rule: lopt.torch.Optimizer(p, r, num_steps=NUM_STEPS))
        # the same tensors in flax's layout, as lopt.torch shows them to the rule
        params = {str(i): jax.numpy.zeros(s[::-1]) + 0.01 for i, s in enumerate(shapes)}
        grads = jax.tree.map(lambda p: p + 1e-2, params)
        tx = lopt.as_optax(rule, num_steps=NUM_STEPS)
        step = jax.jit(lambda g, s, p, tx=tx: tx.update(g, s, p), donate_argnums=1)
        box = {"state": tx.init(params)}

        def run_jax(step=step, box=box, grads=grads, params=params):
            updates, box["state"] = step(grads, box["state"], params)
            jax.block_until_ready(updates)

        out[f"lopt JAX {rule}"] = run_jax
    return out


def measure(size: Size) -> dict:
    """{model: {optimizer: [seconds per update, one per round]}, parameters}."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise UsageError("torch_step needs the torch extra: pip install -e '.[torch]'") from None
    out = {}
    for width, hidden in size.widths:
        shapes = _shapes(width, hidden)
        timers = _timers(shapes)
        for timer in timers.values():  # compile / allocate state first
            timer()
            timer()
        times = {name: [] for name in timers}
        for r in range(size.rounds):
            for name in (list(timers) if r % 2 == 0 else list(timers)[::-1]):
                start = time.perf_counter()
                for _ in range(size.steps):
                    timers[name]()
                times[name].append((time.perf_counter() - start) / size.steps)
        out[f"{int(sum(np.prod(s) for s in shapes)):,} parameters"] = times
    return out


def profile_ops(size: Size, top: int = 8) -> dict:
    """{rule: [[op, ms of self time per update, share of the update]]}: torch.profiler over
    ``size.steps`` updates of each lopt.torch rule on the first model: where the time goes."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    import lopt.torch

    shapes = _shapes(*size.widths[0])
    gen = torch.Generator().manual_seed(0)
    out = {}
    for rule in RULES:
        params = [torch.nn.Parameter(torch.randn(s, generator=gen) * 0.05) for s in shapes]
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen) * 1e-2
        opt = lopt.torch.Optimizer(params, rule, num_steps=NUM_STEPS)
        opt.step()
        opt.step()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(size.steps):
                opt.step()
        ops = [e for e in prof.key_averages() if e.key.startswith("aten::")]
        total = sum(e.self_cpu_time_total for e in ops)
        ops.sort(key=lambda e: -e.self_cpu_time_total)
        out[rule] = [[e.key, e.self_cpu_time_total / 1e3 / size.steps,
                      e.self_cpu_time_total / total] for e in ops[:top]]
    return out


def run(out: str, quick: bool = False, command: str = "lopt bench torch_step",
        progress: bool = True) -> str:
    sz = SIZES["quick" if quick else "full"]
    suite = Suite("torch_step", out, sz, command, 1, progress)
    times = suite.cached("times", lambda: measure(sz))
    lines = ["| model | optimizer | ms per update (median) | × AdamW |", "|---|---|---|---|"]
    ratios = {}
    for model, by_opt in times.items():
        adamw = np.asarray(by_opt["torch.optim.AdamW"])
        for name, secs in by_opt.items():
            ratio = float(np.median(np.asarray(secs) / adamw))
            ratios[f"{model} {name}"] = ratio
            lines.append(f"| {model} | {name} | {np.median(secs) * 1e3:.2f} | {ratio:.1f} |")
    suite.section("Update time", "One update of every parameter of an MLP (gradients given), "
                  "the median over rounds of each round's time over torch.optim.AdamW's in the "
                  "same round.\n\n" + "\n".join(lines) + "\n")
    ops = suite.cached("profile", lambda: profile_ops(sz))
    rows = ["| rule | op | ms per update (self) | share of the aten time |", "|---|---|---|---|"]
    for rule, table in ops.items():
        rows += [f"| {rule} | `{op}` | {ms:.1f} | {share:.0%} |" for op, ms, share in table]
    suite.section("Where the time goes", "torch.profiler over the timed updates of each "
                  "lopt.torch rule on the first model (self CPU time of the aten ops, profiler "
                  "overhead included, so the sum exceeds the timed update): `mm` is the MLP's and "
                  "Newton–Schulz's matmuls, `cat` writing the concatenated features, the "
                  "elementwise ops one pass each over [coordinates, features] arrays.\n\n"
                  + "\n".join(rows) + "\n")
    suite.payload.update({"seconds_per_update": times, "ratio_to_adamw": ratios,
                          "profile": ops})
    return suite.finish("What lopt.torch costs per update",
                        f"{sz.rounds} rounds of {sz.steps} timed updates per optimizer, taking "
                        "turns; compiled or warmed first. Measured with nothing else running.")
