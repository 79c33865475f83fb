"""``lopt bench lo_side_by_side``: lopt's learned rules timed beside learned_optimization's
(Metz et al.'s reference code) in one process, taking turns (issue 39, item 3). Needs
learned_optimization importable in the environment lopt runs from — never a test dependency:
``../shared/tools/reference-env.sh`` builds such an environment; run
``PYTHONPATH=. REFENV/bin/python -m lopt bench lo_side_by_side``.

Measured, for the per-parameter MLP (LO's ``MLPLOpt``, lopt's ``per_parameter_mlp``) and the
Adafactor MLP (``AdafacMLPLOpt``, ``adafac_mlp``): one update (params applied, state donated)
of a 2.1M-parameter pytree, and one antithetic PES gradient estimate on a 10-d quadratic and
on a 16→32→4 MLP task; each optimizer calls once per round, rounds repeated, the median and
the fastest call reported, and LO's time over lopt's (>1: lopt is faster)."""
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
from lopt.tasks import threefry_lowering

# (lopt rule, learned_optimization module and class) compared update for update
PAIRS = (("per_parameter_mlp", "mlp_lopt", "MLPLOpt"),
         ("adafac_mlp", "adafac_mlp_lopt", "AdafacMLPLOpt"))


@dataclasses.dataclass(frozen=True)
class Size:
    width: int  # the pytree: two width x width matrices and a bias
    rounds: int
    pes_runs: int = 16  # antithetic pairs
    truncation: int = 50
    horizon: int = 1000
    pes_rounds: int = 7


SIZES = {"full": Size(1024, 21), "quick": Size(64, 3, 2, 5, 50, 2)}
FAMILIES = ("sum_of_squares", "teacher_mlp")


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

    def call(box):
        with threefry_lowering.jax_default():  # as _lo_pes
            box[0] = step(box[0])

    return call, [state]


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
    return in_turns(calls, size.rounds)


def in_turns(calls: dict, rounds: int) -> dict:
    """{name: [seconds, one per round]}: every ``call(box)`` of ``calls`` run once (compiling,
    a first step), then once per round in turn, the order reversed every other round."""
    for call, box in calls.values():
        call(box)
        jax.block_until_ready(box)
    times = {name: [] for name in calls}
    for r in range(rounds):
        for name in (list(calls) if r % 2 == 0 else list(calls)[::-1]):
            call, box = calls[name]
            start = time.perf_counter()
            call(box)
            jax.block_until_ready(box)
            times[name].append(time.perf_counter() - start)
    return times


def _lo_family(name: str):
    """learned_optimization's task family equal to lopt's ``probe`` family ``name``: its
    QuadraticTask (Σ p², 10-d), or the 16→32→4 ReLU MLP with a random linear teacher per
    instance and a fresh Gaussian minibatch of 32 every step (``probe.teacher_mlp_family``)."""
    from learned_optimization.tasks import base as tasks_base
    from learned_optimization.tasks import quadratics

    if name == "sum_of_squares":
        return tasks_base.single_task_to_family(quadratics.QuadraticTask(dim=10))

    class TeacherMLP(tasks_base.Task):
        def __init__(self, teacher):
            super().__init__()
            self.teacher = teacher

        def init(self, key):
            k1, k2 = jax.random.split(key)
            return {"w1": jax.random.normal(k1, (16, 32)) / jnp.sqrt(16.0),
                    "b1": jnp.zeros(32),
                    "w2": jax.random.normal(k2, (32, 4)) / jnp.sqrt(32.0), "b2": jnp.zeros(4)}

        def loss(self, params, key, data):
            del data
            x = jax.random.normal(key, (32, 16))
            labels = jnp.argmax(x @ self.teacher, axis=-1)
            h = jax.nn.relu(x @ params["w1"] + params["b1"])
            logits = h @ params["w2"] + params["b2"]
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None],
                                                 1))

    class TeacherFamily(tasks_base.TaskFamily):
        datasets = None

        def sample(self, key):
            return jax.random.normal(key, (16, 4))

        def task_fn(self, cfg):
            return TeacherMLP(cfg)

    return TeacherFamily()


def _lo_pes(family: str, module: str, cls: str, sz: Size):
    """(one timed PES gradient estimate of learned_optimization, its state box)."""
    from learned_optimization.outer_trainers import (
        gradient_learner,
        lopt_truncated_step,
        truncated_pes,
        truncation_schedule,
    )

    lo_module = importlib.import_module(f"learned_optimization.learned_optimizers.{module}")
    learned = getattr(lo_module, cls)()
    step = lopt_truncated_step.VectorizedLOptTruncatedStep(
        _lo_family(family), learned,
        truncation_schedule.ConstantTruncationSchedule(sz.horizon), num_tasks=sz.pes_runs,
        random_initial_iteration_offset=sz.horizon)
    # one jitted unroll per truncation: learned_optimization at its fastest setting
    est = truncated_pes.TruncatedPES(step, trunc_length=sz.truncation, std=0.01,
                                     steps_per_jit=sz.truncation)
    weights = gradient_learner.WorkerWeights(
        theta=learned.init(jax.random.PRNGKey(0)), theta_model_state=None,
        outer_state=gradient_learner.OuterState(jnp.asarray(0)))
    box = [est.init_worker_state(weights, jax.random.PRNGKey(1)), jax.random.PRNGKey(2)]

    def call(b):
        # learned_optimization's programs compile with jax's own CPU threefry lowering (lopt
        # lowers its own unrolled: lopt.tasks.threefry_lowering, the same bits)
        with threefry_lowering.jax_default():
            b[1], key = jax.random.split(b[1])
            out, _ = est.compute_gradient_estimate(weights, key, b[0], with_summary=False)
        b[0] = out.unroll_state
        jax.block_until_ready(out.grad)

    return call, box


def _lopt_pes(family: str, rule: str, sz: Size):
    """(one timed PES gradient estimate of lopt, jitted with its state donated, its box)."""
    from lopt.bench.perf.probe import FAMILIES as PROBE_FAMILIES
    from lopt.outer import PES
    from lopt.rules import make_rule

    learned = make_rule(rule)
    theta = learned.init_meta(jax.random.PRNGKey(0))
    est = PES(sigma=0.01, num_runs=sz.pes_runs, truncation=sz.truncation,
              horizon=sz.horizon).build(learned, PROBE_FAMILIES[family]())
    grad = jax.jit(est.grad, donate_argnums=1)
    box = [est.init(jax.random.PRNGKey(1), theta), jax.random.PRNGKey(2)]

    def call(b):
        b[1], key = jax.random.split(b[1])
        g, b[0], _ = grad(theta, b[0], key)
        jax.block_until_ready(g)

    return call, box


def pes_times(sz: Size) -> dict:
    """{family: {optimizer: [seconds per PES gradient estimate, one per round]}}: antithetic
    PES, ``pes_runs`` pairs, truncations of ``truncation`` steps in runs of ``horizon``."""
    out = {}
    for family in FAMILIES:
        calls = {}
        for rule, module, cls in PAIRS:
            calls[f"lopt {rule}"] = _lopt_pes(family, rule, sz)
            calls[f"learned_optimization {cls}"] = _lo_pes(family, module, cls, sz)
        times = in_turns(calls, sz.pes_rounds)
        out[family] = times
    return out


def _ratio_lines(times: dict, unit: float, label: str) -> tuple:
    lines, ratios = [], {}
    for rule, _, cls in PAIRS:
        ours, theirs = np.asarray(times[f"lopt {rule}"]), \
            np.asarray(times[f"learned_optimization {cls}"])
        med, fast = np.median(theirs) / np.median(ours), theirs.min() / ours.min()
        ratios[rule] = {"median": float(med), "fastest": float(fast)}
        lines.append(f"| {label}{rule} / {cls} | {np.median(ours) * unit:.1f} | "
                     f"{np.median(theirs) * unit:.1f} | {med:.2f} | {ours.min() * unit:.1f} | "
                     f"{theirs.min() * unit:.1f} | {fast:.2f} |")
    return lines, ratios


def run(out: str, quick: bool = False, command: str = "lopt bench lo_side_by_side",
        progress: bool = True) -> str:
    check_available()
    import learned_optimization

    sz = SIZES["quick" if quick else "full"]
    suite = Suite("lo_side_by_side", out, sz, command, 2, progress)
    times = suite.cached("updates", lambda: update_times(sz))
    params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(big_pytree(sz.width)))
    head = ["| rule | lopt median ms | LO median ms | LO / lopt (median) | lopt fastest ms | "
            "LO fastest ms | LO / lopt (fastest) |", "|---|---|---|---|---|---|---|"]
    lines, ratios = _ratio_lines(times, 1e3, "")
    suite.section("One update", f"A {params:,}-parameter pytree (two {sz.width}x{sz.width} "
                  "matrices and a bias), parameters applied and state donated inside the jit, "
                  f"{sz.rounds} rounds in which every optimizer calls once (order reversed "
                  "every other round).\n\n" + "\n".join(head + lines) + "\n")
    pes = suite.cached("pes", lambda: pes_times(sz))
    pes_lines, pes_ratios = [], {}
    for family, by_opt in pes.items():
        rows, r = _ratio_lines(by_opt, 1e3, f"{family}: ")
        pes_lines += rows
        pes_ratios[family] = r
    suite.section("PES", f"One antithetic PES gradient estimate: {sz.pes_runs} pairs of runs, "
                  f"truncations of {sz.truncation} steps in runs of {sz.horizon}, sigma 0.01, "
                  "on a 10-d sum of squares (learned_optimization's QuadraticTask) and a "
                  "16→32→4 ReLU MLP with a random teacher per instance; learned_optimization "
                  "with one jitted unroll per truncation (steps_per_jit = truncation), lopt "
                  f"with the whole estimate jitted and its state donated; {sz.pes_rounds} "
                  "rounds in turns. Ratios over 1: lopt is faster.\n\n"
                  + "\n".join(head + pes_lines) + "\n")
    suite.payload.update({"seconds_per_update": times, "lo_over_lopt": ratios,
                          "seconds_per_pes_estimate": pes, "pes_lo_over_lopt": pes_ratios,
                          "learned_optimization": getattr(learned_optimization, "__file__", "")})
    return suite.finish("lopt beside learned_optimization",
                        "Both libraries in one process (the reference environment, the same "
                        "jax), taking turns; measured with nothing else running.")
