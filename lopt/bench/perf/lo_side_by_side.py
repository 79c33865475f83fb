"""``lopt bench lo_side_by_side``: lopt's learned rules timed beside learned_optimization's
(Metz et al.'s reference code) in one process, taking turns (issue 39, item 3). Needs
learned_optimization importable in the environment lopt runs from — never a test dependency:
``../shared/tools/reference-env.sh`` builds such an environment; run
``PYTHONPATH=. REFENV/bin/python -m lopt bench lo_side_by_side``.

Measured: one update (params applied, state donated) of a 2.1M-parameter pytree by the
per-parameter MLP (LO's ``MLPLOpt``, lopt's ``per_parameter_mlp``) and the Adafactor MLP
(``AdafacMLPLOpt``, ``adafac_mlp``); each optimizer calls once per round, rounds repeated, the
median and the fastest call reported, and LO's time over lopt's (>1: lopt is faster)."""
from __future__ import annotations

import dataclasses
import importlib.util
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lopt.bench.perf.probe import RUN_LENGTH, big_pytree
from lopt.bench.suite import Suite
from lopt.files.errors import UsageError

# (lopt rule, learned_optimization module and class) compared update for update
PAIRS = (("per_parameter_mlp", "mlp_lopt", "MLPLOpt"),
         ("adafac_mlp", "adafac_mlp_lopt", "AdafacMLPLOpt"))


@dataclasses.dataclass(frozen=True)
class Size:
    width: int  # the pytree: two width x width matrices and a bias
    rounds: int


SIZES = {"full": Size(1024, 21), "quick": Size(64, 3)}


def check_available() -> None:
    """One line when learned_optimization cannot be imported here."""
    if importlib.util.find_spec("learned_optimization") is None:
        raise UsageError("lo_side_by_side needs learned_optimization importable: build the "
                         "reference environment (../shared/tools/reference-env.sh) and run "
                         "lopt from it (PYTHONPATH=. REFENV/bin/python -m lopt bench ...)")


def _lo_step(module: str, cls: str, params, grads):
    """(jitted LO update with its state donated, the first state)."""
    lo_module = importlib.import_module(f"learned_optimization.learned_optimizers.{module}")
    learned = getattr(lo_module, cls)()
    opt = learned.opt_fn(learned.init(jax.random.PRNGKey(0)))
    state = opt.init(jax.tree.map(jnp.copy, params), num_steps=RUN_LENGTH)  # donated
    step = jax.jit(lambda s: opt.update(s, grads, loss=jnp.float32(1.0)), donate_argnums=0)
    return (lambda box: box.__setitem__(0, step(box[0]))), [state]


def _lopt_step(rule: str, params, grads):
    """(jitted lopt update through as_optax, params applied, params and state donated)."""
    import lopt
    from lopt.rules import make_rule

    learned = make_rule(rule)
    theta = learned.init_meta(jax.random.PRNGKey(0))
    tx = lopt.as_optax(learned, theta, num_steps=RUN_LENGTH) if learned.wants_num_steps \
        else lopt.as_optax(learned, theta)

    def update(p, s):
        updates, s = tx.update(grads, s, p, value=jnp.float32(1.0))
        return optax.apply_updates(p, updates), s

    step = jax.jit(update, donate_argnums=(0, 1))
    box = [jax.tree.map(jnp.copy, params), tx.init(params)]
    return (lambda b: b.__setitem__(slice(0, 2), step(b[0], b[1]))), box


def update_times(size: Size) -> dict:
    """{optimizer: [seconds per call, one per round]} on ``big_pytree(size.width)``."""
    params = big_pytree(size.width)
    grads = jax.tree.map(lambda p: 1e-2 * jax.random.normal(jax.random.PRNGKey(1), p.shape),
                         params)
    calls = {}
    for rule, module, cls in PAIRS:
        calls[f"lopt {rule}"] = _lopt_step(rule, params, grads)
        calls[f"learned_optimization {cls}"] = _lo_step(module, cls, params, grads)
    for call, box in calls.values():  # compile, and a first step
        call(box)
        jax.block_until_ready(box)
    times = {name: [] for name in calls}
    for r in range(size.rounds):
        for name in (list(calls) if r % 2 == 0 else list(calls)[::-1]):
            call, box = calls[name]
            start = time.perf_counter()
            call(box)
            jax.block_until_ready(box)
            times[name].append(time.perf_counter() - start)
    return times


def run(out: str, quick: bool = False, command: str = "lopt bench lo_side_by_side",
        progress: bool = True) -> str:
    check_available()
    import learned_optimization

    sz = SIZES["quick" if quick else "full"]
    suite = Suite("lo_side_by_side", out, sz, command, 1, progress)
    times = suite.cached("updates", lambda: update_times(sz))
    params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(big_pytree(sz.width)))
    lines = ["| rule | lopt median ms | LO median ms | LO / lopt (median) | lopt fastest ms | "
             "LO fastest ms | LO / lopt (fastest) |", "|---|---|---|---|---|---|---|"]
    ratios = {}
    for rule, _, cls in PAIRS:
        ours, theirs = np.asarray(times[f"lopt {rule}"]), \
            np.asarray(times[f"learned_optimization {cls}"])
        med, fast = np.median(theirs) / np.median(ours), theirs.min() / ours.min()
        ratios[rule] = {"median": float(med), "fastest": float(fast)}
        lines.append(f"| {rule} / {cls} | {np.median(ours) * 1e3:.1f} | "
                     f"{np.median(theirs) * 1e3:.1f} | {med:.2f} | {ours.min() * 1e3:.1f} | "
                     f"{theirs.min() * 1e3:.1f} | {fast:.2f} |")
    suite.section("One update", f"A {params:,}-parameter pytree (two {sz.width}x{sz.width} "
                  "matrices and a bias), parameters applied and state donated inside the jit, "
                  f"{sz.rounds} rounds in which every optimizer calls once (order reversed "
                  "every other round).\n\n" + "\n".join(lines) + "\n")
    suite.payload.update({"seconds_per_update": times, "lo_over_lopt": ratios,
                          "learned_optimization": getattr(learned_optimization, "__file__", "")})
    return suite.finish("lopt beside learned_optimization",
                        "Both libraries in one process (the reference environment, the same "
                        "jax), taking turns; measured with nothing else running.")
