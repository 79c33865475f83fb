"""Meta-training throughput: inner steps per second of each estimator and of a plain unroll.

Run as a script (``python throughput.py CONFIG.json``) it prints one JSON line, so the same
measurement can be made with another checkout of lopt first on ``PYTHONPATH``: that is how
``lopt bench perf`` sets today's code beside an earlier commit in one run. It uses only the
API both share (Task, TaskFamily, the estimators, ``make_rule``, ``truncated_unroll``).
"""
from __future__ import annotations

import json
import sys
import time

import jax
import jax.numpy as jnp


def teacher_mlp_family(inputs: int = 16, hidden: int = 32, classes: int = 4, batch: int = 32):
    """A 16→32→4 ReLU MLP on synthetic data: Gaussian inputs labelled by a random linear
    teacher drawn per instance, a fresh minibatch of ``batch`` every step."""
    from lopt.tasks.base import Task, TaskFamily

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
    from lopt.tasks.base import Task, TaskFamily

    def build(cfg):
        del cfg
        return Task(init=lambda key: {"p": jax.random.normal(key, (dim,))},
                    loss=lambda params, key: jnp.sum(params["p"] ** 2))

    return TaskFamily(sample=lambda key: {}, build=build, name=f"perf_sum_of_squares_{dim}")


FAMILIES = {"teacher_mlp": teacher_mlp_family, "sum_of_squares": sum_of_squares_family}


def _estimator(name: str, num_tasks: int, truncation: int, horizon: int, remat=None):
    from lopt import outer

    kwargs = dict(num_tasks=num_tasks, truncation=truncation, horizon=horizon)
    if remat is not None:
        kwargs["remat"] = remat
    if name == "tbptt":
        return outer.TBPTT(**kwargs)
    if name == "tbptt_second_derivatives":
        return outer.TBPTT(second_derivatives=True, **kwargs)
    return {"es": outer.ES, "pes": outer.PES, "reparam": outer.Reparam}[name](sigma=0.01,
                                                                               **kwargs)


def _runs(name: str, num_tasks: int) -> int:
    """Inner runs an estimator advances per outer step: both halves of antithetic pairs."""
    return num_tasks if name.startswith("tbptt") else 2 * num_tasks


def measure(config: dict) -> dict:
    """Inner steps/s of ``config["estimator"]`` (or ``"unroll"``: a plain forward unroll of the
    same number of runs) for ``config["rule"]`` on ``config["family"]``."""
    from lopt.outer.unroll import broadcast_runs, init_inner_batch, truncated_unroll
    from lopt.rules import make_rule

    rule = make_rule(config["rule"])
    family = FAMILIES[config["family"]]()
    theta = rule.init_meta(jax.random.PRNGKey(0))
    est_name, n, k = config["estimator"], config["num_tasks"], config["truncation"]
    if est_name.startswith("unroll"):
        runs = _runs(est_name.split(":")[1], n) if ":" in est_name else n
        state = init_inner_batch(rule, family, theta, jax.random.PRNGKey(1), runs,
                                 config["horizon"])

        def step(theta, state, key):
            del key
            new, out = truncated_unroll(rule, family, broadcast_runs(theta, runs), state,
                                        num_steps=k, horizon=config["horizon"])
            return jnp.mean(out.meta_loss), new, {}
    else:
        runs = _runs(est_name, n)
        est = _estimator(est_name, n, k, config["horizon"], config.get("remat")).build(
            rule, family)
        state = est.init(jax.random.PRNGKey(1), theta)
        step = est.grad
    step = jax.jit(step, donate_argnums=1)
    key = jax.random.PRNGKey(2)
    t0 = time.perf_counter()
    out = step(theta, state, key)
    jax.block_until_ready(out)
    compile_s = time.perf_counter() - t0
    state = out[1]
    times = []
    for i in range(config["repeats"]):
        t = time.perf_counter()
        out = step(theta, state, jax.random.fold_in(key, i))
        jax.block_until_ready(out)
        times.append(time.perf_counter() - t)
        state = out[1]
    times.sort()
    median = times[len(times) // 2]
    return {**config, "runs": runs, "seconds_per_outer_step": median, "first_call_s": compile_s,
            "inner_steps_per_s": runs * k / median}


if __name__ == "__main__":
    print(json.dumps([measure(c) for c in json.load(open(sys.argv[1]))]))
