"""Truncated inner unrolls: one ``lax.scan`` over K inner steps of a vmapped batch of task instances.

An instance that reaches the horizon is reset in place (fresh cfg, init and rule state), and the
batch starts staggered, so truncation boundaries of different instances fall at different
points of their inner runs.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lopt.rules.base import UpdateRule
from lopt.tasks.base import TaskFamily


class InnerState(NamedTuple):
    """One inner training run (batched along a leading axis when vmapped)."""

    cfg: Any
    params: Any
    rule_state: Any
    step: jax.Array


class StepOutput(NamedTuple):
    """Per inner step: f(θ_t) on the step's minibatch, f(θ_{t+1}) for the meta-loss, a reset flag."""

    loss: jax.Array
    meta_loss: jax.Array
    reset: jax.Array


def init_inner(rule: UpdateRule, family: TaskFamily, theta, key) -> InnerState:
    """A fresh inner run: a sampled task instance, its initial parameters and the rule's state."""
    k_cfg, k_params = jax.random.split(key)
    cfg = family.sample(k_cfg)
    params = family.build(cfg).init(k_params)
    return InnerState(cfg, params, rule.init(theta, params), jnp.zeros((), jnp.int32))


def init_inner_batch(rule: UpdateRule, family: TaskFamily, theta, key, num_tasks: int,
                     horizon: int, stagger: bool = True) -> InnerState:
    """``num_tasks`` fresh inner runs; with ``stagger`` their step counters start uniformly in
    [0, horizon), so their first runs are shorter and later resets are spread over truncations."""
    k_init, k_offset = jax.random.split(key)
    batch = jax.vmap(lambda k: init_inner(rule, family, theta, k))(
        jax.random.split(k_init, num_tasks))
    if stagger:
        offsets = jax.random.randint(k_offset, (num_tasks,), 0, horizon).astype(jnp.int32)
        batch = batch._replace(step=offsets)
    return batch


def inner_step(rule: UpdateRule, family: TaskFamily, theta, inst: InnerState, key, *,
               horizon: int, second_derivatives: bool = True):
    """One inner step θ_{t+1} = θ_t + U(∇f(θ_t)) of one run; ``reset`` says it reached ``horizon``.

    Without ``second_derivatives`` the gradient and loss fed to the rule are constants to the
    meta-gradient (∂∇_t/∂φ = 0, seed 001's dropped dashed edges).
    """
    k_train, k_meta = jax.random.split(key)
    task = family.build(inst.cfg)
    loss, grads = jax.value_and_grad(task.loss)(inst.params, k_train)
    rule_loss = loss
    if not second_derivatives:
        grads = jax.lax.stop_gradient(grads)
        rule_loss = jax.lax.stop_gradient(loss)
    updates, rule_state = rule.update(theta, inst.rule_state, grads, inst.params, rule_loss)
    params = optax.apply_updates(inst.params, updates)
    meta_loss = task.loss(params, k_meta)
    step = inst.step + 1
    return InnerState(inst.cfg, params, rule_state, step), StepOutput(loss, meta_loss,
                                                                      step >= horizon)


def reset_finished(rule: UpdateRule, family: TaskFamily, theta, batch: InnerState, done, key):
    """Replace the runs flagged in ``done`` by fresh ones; skipped entirely when none is done."""
    num_tasks = done.shape[0]

    def reset(batch):
        fresh = jax.vmap(lambda k: init_inner(rule, family, theta, k))(
            jax.random.split(key, num_tasks))
        def pick(f, a):
            return jnp.where(done.reshape((num_tasks,) + (1,) * (a.ndim - 1)), f, a)
        return jax.tree.map(pick, fresh, batch)

    return jax.lax.cond(done.any(), reset, lambda b: b, batch)


def truncated_unroll(rule: UpdateRule, family: TaskFamily, theta, batch: InnerState, key, *,
                     num_steps: int, horizon: int, second_derivatives: bool = True):
    """Advance every run of ``batch`` by ``num_steps`` inner steps in one ``lax.scan``.

    Runs that reach ``horizon`` restart with a fresh instance. Returns the new batch and a
    StepOutput whose fields have shape [num_steps, num_tasks].
    """
    num_tasks = batch.step.shape[0]

    def one_step(inst, k):
        return inner_step(rule, family, theta, inst, k, horizon=horizon,
                          second_derivatives=second_derivatives)

    def body(carry, k):
        k_steps, k_reset = jax.random.split(k)
        carry, out = jax.vmap(one_step)(carry, jax.random.split(k_steps, num_tasks))
        carry = reset_finished(rule, family, theta, carry, out.reset, k_reset)
        return carry, out

    return jax.lax.scan(body, batch, jax.random.split(key, num_steps))
