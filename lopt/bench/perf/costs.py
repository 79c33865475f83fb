"""Static costs of a rule: its network's matmul FLOPs per coordinate, its FLOP floor on a pytree,
and its optimizer-state bytes per parameter; and memory of backprop through an unroll."""
from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from lopt.bench.perf.probe import big_pytree
from lopt.optax_adapter.transformation import as_optax
from lopt.outer import TBPTT
from lopt.rules import adam, make_rule
from lopt.tasks import make_family

# Parts of a theta applied once per tensor, not per coordinate (hierarchical's tensor LSTM).
PER_TENSOR_PARTS = ("tensor_lstm", "context", "scheduler")


def flops_per_coordinate(theta) -> int:
    """2 · fan_in · fan_out summed over the rule's weight matrices applied to every coordinate:
    the multiply-adds of its per-coordinate network, the part a matmul unit can do."""
    total = 0
    for path, leaf in jax.tree_util.tree_flatten_with_path(theta)[0]:
        names = [getattr(k, "key", getattr(k, "idx", None)) for k in path]
        if np.ndim(leaf) == 2 and not any(n in PER_TENSOR_PARTS for n in names):
            total += 2 * int(np.shape(leaf)[0]) * int(np.shape(leaf)[1])
    return total


def tbptt_memory(rule_name: str, task: str, num_tasks: int, truncation: int, remat: str,
                 repeats: int = 2) -> dict:
    """XLA's buffer plan (temporaries, arguments, outputs) and the seconds per meta-gradient
    of truncated BPTT through ``truncation`` steps with ``remat``."""

    rule, family = make_rule(rule_name), make_family(task)
    theta = rule.init_meta(jax.random.PRNGKey(0))
    est = TBPTT(num_runs=num_tasks, truncation=truncation, horizon=1000, remat=remat).build(
        rule, family)
    state = est.init(jax.random.PRNGKey(1), theta)
    grad = jax.jit(est.grad)
    compiled = grad.lower(theta, state, jax.random.PRNGKey(2)).compile()
    mem = compiled.memory_analysis()
    out = grad(theta, state, jax.random.PRNGKey(2))
    jax.block_until_ready(out)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(grad(theta, state, jax.random.PRNGKey(2)))
        times.append(time.perf_counter() - t)
    return {"rule": rule_name, "task": task, "num_tasks": num_tasks, "truncation": truncation,
            "remat": remat, "temp_bytes": int(mem.temp_size_in_bytes),
            "argument_bytes": int(mem.argument_size_in_bytes),
            "output_bytes": int(mem.output_size_in_bytes),
            "seconds_per_meta_gradient": float(np.median(times))}


def adam_training_step(width: int, repeats: int) -> dict:
    """Seconds per jitted training step (loss, gradient, update, apply) of a width-wide
    two-layer MLP under optax.adam and under ``lopt.as_optax(lopt.rules.adam())``, the two
    timed alternately (``4 · repeats`` rounds) so that a change of load hits both; the ratio
    is the median of the per-round ratios."""

    params = big_pytree(width)
    x = jax.random.normal(jax.random.PRNGKey(3), (64, width))

    def loss(p):
        return jnp.mean((jax.nn.relu(x @ p["w1"] + p["b"]) @ p["w2"] - x) ** 2)

    steps, states = {}, {}
    for name, tx in (("optax.adam", optax.adam(1e-3)), ("lopt adam", as_optax(adam(1e-3)))):
        def step(p, s, tx=tx):
            u, s = tx.update(jax.grad(loss)(p), s, p)
            return optax.apply_updates(p, u), s

        steps[name] = jax.jit(step, donate_argnums=(0, 1))
        p0 = jax.tree.map(jnp.copy, params)
        states[name] = jax.block_until_ready(steps[name](p0, tx.init(p0)))
    times = {name: [] for name in steps}
    for _ in range(4 * repeats):
        for name, fn in steps.items():
            t = time.perf_counter()
            states[name] = jax.block_until_ready(fn(*states[name]))
            times[name].append(time.perf_counter() - t)
    ratios = np.asarray(times["lopt adam"]) / np.asarray(times["optax.adam"])
    return {"width": width, "rounds": 4 * repeats,
            **{name: float(np.median(t)) for name, t in times.items()},
            "ratio": float(np.median(ratios))}
