"""Timing probes of ``lopt bench perf``: one rule update on a large pytree, the machine's
matmul rate, and meta-training inner steps per second of each estimator and of a plain unroll.

Run as a script (``python probe.py JOBS.json``) it prints one JSON line, so the same
measurements can be made with another checkout of lopt first on ``PYTHONPATH``: that is how
``lopt bench perf`` sets today's code beside an earlier commit in one run. It uses only the
API both share (Task, TaskFamily, the estimators, ``make_rule``, ``truncated_unroll``).
"""
from __future__ import annotations

import inspect
import json
import sys
import time

import jax
import jax.numpy as jnp
import optax

from lopt.outer import ES, PES, TBPTT, Reparam
from lopt.outer.unroll import broadcast_runs, init_inner_batch, truncated_unroll

try:
    from lopt.outer.unroll import UnrollOptions
except ImportError:  # this probe also runs the baseline commit, whose unroll took keywords
    UnrollOptions = None
from lopt.rules import RULES, make_rule
from lopt.tasks import make_family
from lopt.tasks.base import Task, TaskFamily

RUN_LENGTH = 1000  # the training length told to rules that schedule over it


def teacher_mlp_family(inputs: int = 16, hidden: int = 32, classes: int = 4, batch: int = 32):
    """A 16→32→4 ReLU MLP on synthetic data: Gaussian inputs labelled by a random linear
    teacher drawn per instance, a fresh minibatch of ``batch`` every step."""

    def sample(key):
        return {"teacher": jax.random.normal(key, (inputs, classes))}

    def build(cfg):
        def init(key):
            k1, k2 = jax.random.split(key)
            return {"w1": jax.random.normal(k1, (inputs, hidden)) / jnp.sqrt(inputs),
                    "b1": jnp.zeros(hidden),
                    "w2": jax.random.normal(k2, (hidden, classes)) / jnp.sqrt(hidden),
                    "b2": jnp.zeros(classes)}

        def loss(params, key):
            x = jax.random.normal(key, (batch, inputs))
            labels = jnp.argmax(x @ cfg["teacher"], axis=-1)
            logits = jax.nn.relu(x @ params["w1"] + params["b1"]) @ params["w2"] + params["b2"]
            return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))

        return Task(init=init, loss=loss)

    return TaskFamily(sample=sample, build=build, name=f"perf_teacher_mlp_{inputs}_{hidden}")


def sum_of_squares_family(dim: int = 10):
    """learned_optimization's QuadraticTask: f(p) = Σ p², p₀ ~ N(0, 1) in ``dim`` dimensions."""

    def build(cfg):
        del cfg
        return Task(init=lambda key: {"p": jax.random.normal(key, (dim,))},
                    loss=lambda params, key: jnp.sum(params["p"] ** 2))

    return TaskFamily(sample=lambda key: {}, build=build, name=f"perf_sum_of_squares_{dim}")


def l2l_quadratic_family():
    """Andrychowicz et al. 2016's random 10×10 quadratics, the family of ``lopt bench
    estimators``."""

    return make_family("quadratic")


FAMILIES = {"teacher_mlp": teacher_mlp_family, "sum_of_squares": sum_of_squares_family,
            "quadratic": l2l_quadratic_family}


def _estimator(name: str, num_tasks: int, truncation: int, horizon: int, remat=None):
    kwargs = dict(num_tasks=num_tasks, truncation=truncation, horizon=horizon)
    if remat is not None:
        kwargs["remat"] = remat
    if name == "tbptt":
        return TBPTT(**kwargs)
    if name == "tbptt_second_derivatives":
        return TBPTT(second_derivatives=True, **kwargs)
    return {"es": ES, "pes": PES, "reparam": Reparam}[name](sigma=0.01,
                                                                               **kwargs)


def _runs(name: str, num_tasks: int) -> int:
    """Inner runs an estimator advances per outer step: both halves of antithetic pairs."""
    return num_tasks if name.startswith("tbptt") else 2 * num_tasks


def median_time(fn, args, repeats: int, feed=None):
    """Median wall time of ``fn(*args)`` over ``repeats`` calls after a first (compiling) one;
    ``feed(args, out)`` gives the next call's arguments (a donated state fed back)."""
    out = fn(*args)
    jax.block_until_ready(out)
    times = []
    for _ in range(repeats):
        if feed is not None:
            args = feed(args, out)
        t = time.perf_counter()
        out = fn(*args)
        jax.block_until_ready(out)
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def matmul_rate(size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of a jitted size × size float32 matmul: the ceiling the FLOP floors use."""
    a = jax.random.normal(jax.random.PRNGKey(0), (size, size))
    t = median_time(jax.jit(lambda a: a @ a), (a,), repeats)
    return 2 * size**3 / t / 1e9


def big_pytree(width: int):
    """Two width × width matrices and a bias: the 2.1M-parameter pytree at 1024."""
    k1, k2 = jax.random.split(jax.random.PRNGKey(0))
    return {"w1": 0.03 * jax.random.normal(k1, (width, width)),
            "w2": 0.03 * jax.random.normal(k2, (width, width)), "b": jnp.zeros(width)}


def update_step(rule_name: str, params, grads):
    """(jitted update with donated state, its first state) of a rule, or of optax.adam."""

    if rule_name == "optax.adam":
        tx = optax.adam(1e-3)
        return jax.jit(lambda s, g, p: tx.update(g, s, p), donate_argnums=0), tx.init(params)

    rule = make_rule(rule_name)
    theta = rule.init_meta(jax.random.PRNGKey(0))
    step = jax.jit(lambda s, g, p: rule.update(theta, s, g, p, jnp.float32(1.0)),
                   donate_argnums=0)
    # Rules told their run length (celo) get one; the baseline commit's rules have no start().
    state = rule.start(theta, params, RUN_LENGTH) if hasattr(rule, "start") else \
        rule.init(theta, params)
    return step, jax.tree.map(jnp.copy, state)  # distinct donated buffers


def update_times(job: dict) -> list:
    """Seconds per jitted update of every rule in ``job["rules"]`` (``"optax.adam"`` is optax
    itself) on ``big_pytree(job["width"])``, state donated and fed back as in a training loop.
    The rules take turns, one call each per round for ``job["repeats"]`` rounds, so that a
    change of load hits them all; each rule's time is its median over the rounds."""
    params = big_pytree(job["width"])
    grads = jax.tree.map(lambda p: jax.random.normal(jax.random.PRNGKey(1), p.shape), params)
    steps, states, times = {}, {}, {}
    # The baseline commit's lopt lacks the rules added after it.
    for name in [n for n in job["rules"] if n == "optax.adam" or n in RULES]:
        steps[name], state = update_step(name, params, grads)
        states[name] = jax.block_until_ready(steps[name](state, grads, params))[1]
        times[name] = []
    for _ in range(job["repeats"]):
        for name, step in steps.items():
            t = time.perf_counter()
            states[name] = jax.block_until_ready(step(states[name], grads, params))[1]
            times[name].append(time.perf_counter() - t)
    return [{"kind": "update", "rule": name, "width": job["width"], "repeats": job["repeats"],
             "seconds": sorted(t)[len(t) // 2]} for name, t in times.items()]


def throughput(config: dict) -> dict:
    """Inner steps/s of ``config["estimator"]`` (or ``"unroll"``: a plain forward unroll of the
    same number of runs) for ``config["rule"]`` on ``config["family"]``."""

    rule = make_rule(config["rule"])
    family = FAMILIES[config["family"]]()
    theta = rule.init_meta(jax.random.PRNGKey(0))
    est_name, n, k = config["estimator"], config["num_tasks"], config["truncation"]
    if est_name.startswith("unroll"):
        runs = _runs(est_name.split(":")[1], n) if ":" in est_name else n
        state = init_inner_batch(rule, family, theta, jax.random.PRNGKey(1), runs,
                                 config["horizon"])
        if UnrollOptions is None:
            def unroll(thetas, state):
                return truncated_unroll(rule, family, thetas, state, num_steps=k,
                                        horizon=config["horizon"])
        else:
            opts = UnrollOptions(num_runs=runs, truncation=k, horizon=config["horizon"],
                                 remat="none")

            def unroll(thetas, state):
                return truncated_unroll(rule, family, thetas, state, opts)

        def step(theta, state, key):
            del key
            new, out = unroll(broadcast_runs(theta, runs), state)
            return jnp.mean(out.meta_loss), new, {}
    else:
        runs = _runs(est_name, n)
        est = _estimator(est_name, n, k, config["horizon"], config.get("remat")).build(
            rule, family)
        state = est.init(jax.random.PRNGKey(1), theta)
        step = est.grad
    step = jax.jit(step, donate_argnums=1)
    median = median_time(step, (theta, state, jax.random.PRNGKey(2)), config["repeats"],
                          feed=lambda a, out: (a[0], out[1], jax.random.fold_in(a[2], 1)))
    return {**config, "runs": runs, "seconds_per_outer_step": median,
            "inner_steps_per_s": runs * k / median}


def outer_throughput(config: dict) -> dict:
    """Inner steps/s of a whole outer step (PES meta-gradient, skip check and adam(3e-4)
    meta-update) on one device, compiled and donated as ``lopt.outer.train`` compiles it."""
    from lopt.outer import placement
    from lopt.outer.train import TrainState, make_outer_step

    rule, family = make_rule(config["rule"]), FAMILIES[config["family"]]()
    n, k = config["num_tasks"], config["truncation"]
    place = placement.Placement(placement.resolve_devices(None), n)
    # Before the mesh (the baseline commit) one device meant no axis and a plain jit.
    mesh = hasattr(place, "mesh")
    # The baseline commit predates num_tasks -> num_runs (which takes the old name warning)
    runs_name = "num_runs" if "num_runs" in inspect.signature(PES).parameters else "num_tasks"
    est = PES(**{runs_name: n}, truncation=k, horizon=config["horizon"],
              max_horizon=config.get("max_horizon"), sigma=0.01).build(
        rule, family, axis_name=place.AXIS if mesh else None)
    meta_opt = optax.adam(3e-4)
    k_theta, k_est, k_train = jax.random.split(jax.random.PRNGKey(0), 3)
    theta = rule.init_meta(k_theta)
    state = TrainState(theta, meta_opt.init(theta), est.init(k_est, theta), k_train,
                       jnp.zeros((), jnp.int32))
    step = make_outer_step(est, meta_opt)
    fn = place.compile(step, state) if mesh else place.compile(step)
    state = place.to_devices(jax.tree.map(jnp.copy, state))
    median = median_time(lambda s: fn(s)[0], (state,), config["repeats"],
                         feed=lambda a, out: (out,))
    return {**config, "runs": 2 * n, "seconds_per_outer_step": median,
            "inner_steps_per_s": 2 * n * k / median}


def curve_time(config: dict) -> dict:
    """Seconds per inner step of one run, Adam training ``family``'s ``num_tasks`` runs for
    ``steps`` steps as ``lopt.evaluation.loss_curves`` does (the unroll's ``lax.scan``)."""
    from lopt.evaluation import loss_curves
    from lopt.rules import adam

    family, n, steps = make_family(config["family"]), config["num_tasks"], config["steps"]
    run = jax.jit(lambda key: loss_curves(adam(1e-3), {}, family, key, num_tasks=n,
                                          num_steps=steps))
    median = median_time(run, (jax.random.PRNGKey(0),), config["repeats"])
    return {**config, "seconds_per_run_step": median / (n * steps)}


def run_jobs(jobs: list) -> list:
    """Every job ({"kind": "updates" | "throughput" | "outer" | "curve" | "matmul", ...})
    measured in order."""
    out = []
    for job in jobs:
        if job["kind"] == "updates":
            out += update_times(job)
        elif job["kind"] == "throughput":
            out.append(throughput(job))
        elif job["kind"] == "outer":
            out.append(outer_throughput(job))
        elif job["kind"] == "curve":
            out.append(curve_time(job))
        else:
            out.append({**job, "gflops": matmul_rate()})
    return out


if __name__ == "__main__":
    print(json.dumps(run_jobs(json.load(open(sys.argv[1])))))
