"""The meta-training loop: one jitted outer step, an optax meta-optimizer, logs and exact resumes."""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from lopt.checkpoint import load_pytree, read_metadata, save_pytree
from lopt.rules.base import UpdateRule
from lopt.tasks.base import TaskFamily


class TrainState(NamedTuple):
    """Everything an outer step reads and writes; a checkpoint is exactly this."""

    theta: Any
    opt_state: Any
    est_state: Any
    key: jax.Array
    step: jax.Array


@dataclasses.dataclass
class TrainResult:
    theta: Any
    history: list
    state: TrainState


def default_meta_optimizer(learning_rate: float = 1e-3, clip_grad_norm: float = 1.0):
    """Adam on the meta-parameters after clipping the meta-gradient's global norm."""
    return optax.chain(optax.clip_by_global_norm(clip_grad_norm), optax.adam(learning_rate))


def make_outer_step(estimator, meta_optimizer):
    """One outer step as a pure function of TrainState: estimate, skip if non-finite, update."""

    def outer_step(state: TrainState):
        key, sub = jax.random.split(state.key)
        meta_grad, est_state, metrics = estimator.grad(state.theta, state.est_state, sub)
        grad_norm = optax.tree.norm(meta_grad)
        finite = jnp.isfinite(grad_norm) & jnp.isfinite(metrics["meta_loss"])
        updates, opt_state = meta_optimizer.update(meta_grad, state.opt_state, state.theta)
        theta = optax.apply_updates(state.theta, updates)
        # A non-finite meta-gradient must not reach theta or the optimizer's moments.
        theta, opt_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old),
                                        (theta, opt_state), (state.theta, state.opt_state))
        metrics = dict(metrics, grad_norm=grad_norm, skipped=(~finite).astype(jnp.int32))
        return TrainState(theta, opt_state, est_state, key, state.step + 1), metrics

    return outer_step


def _trim_log(log_path: str, step: int) -> None:
    """Keep only log lines of steps before ``step``, so a resumed run's log has no duplicates."""
    if not os.path.exists(log_path):
        return
    with open(log_path) as f:
        lines = [line for line in f if line.strip() and json.loads(line)["step"] < step]
    with open(log_path, "w") as f:
        f.writelines(lines)


def train(rule: UpdateRule, family: TaskFamily, estimator, *, num_steps: int,
          seed: int = 0, meta_optimizer: Optional[optax.GradientTransformation] = None,
          theta=None, log_path: Optional[str] = None, checkpoint_path: Optional[str] = None,
          checkpoint_every: int = 100, resume: bool = True, progress: bool = True) -> TrainResult:
    """Meta-train ``rule`` on ``family`` with ``estimator`` (e.g. ``TBPTT(...)``) for ``num_steps``.

    Every outer step is one jitted call. With ``checkpoint_path`` the whole TrainState is written
    atomically every ``checkpoint_every`` steps and at the end; with ``resume`` an existing
    checkpoint is continued, and the result equals that of an uninterrupted run bit for bit.
    ``log_path`` receives one JSON line of metrics per step.
    """
    if num_steps < 0:
        raise ValueError(f"num_steps must be a non-negative integer, got {num_steps}")
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be a positive integer, got {checkpoint_every}")
    meta_optimizer = meta_optimizer or default_meta_optimizer()
    est = estimator.build(rule, family) if hasattr(estimator, "build") else estimator

    key = jax.random.PRNGKey(seed)
    k_theta, k_est, k_train = jax.random.split(key, 3)
    theta = rule.init_meta(k_theta) if theta is None else theta
    state = TrainState(theta, meta_optimizer.init(theta), est.init(k_est, theta), k_train,
                       jnp.zeros((), jnp.int32))

    if checkpoint_path and resume and os.path.exists(checkpoint_path):
        meta = read_metadata(checkpoint_path)
        if meta.get("rule") != rule.name:
            raise ValueError(f"checkpoint {checkpoint_path} holds rule {meta.get('rule')!r}, "
                             f"not {rule.name!r}")
        state = load_pytree(checkpoint_path, state)
    start = int(state.step)
    if log_path:
        os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
        _trim_log(log_path, start)

    step_fn = jax.jit(make_outer_step(est, meta_optimizer), donate_argnums=0)

    def write_checkpoint(s):
        save_pytree(checkpoint_path, s, {"rule": rule.name, "config": rule.config,
                                         "step": int(s.step)})

    history = []
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=num_steps, initial=start, desc="meta-train", unit="step")
    log_file = open(log_path, "a") if log_path else None
    try:
        for step in range(start, num_steps):
            state, metrics = step_fn(state)
            record = {"step": step, **{k: float(v) for k, v in jax.device_get(metrics).items()}}
            history.append(record)
            if log_file:
                log_file.write(json.dumps(record) + "\n")
                log_file.flush()
            if bar:
                bar.update(1)
                bar.set_postfix(meta_loss=f"{record['meta_loss']:.4g}", refresh=False)
            if checkpoint_path and (step + 1) % checkpoint_every == 0:
                write_checkpoint(state)
    finally:
        if bar:
            bar.close()
        if log_file:
            log_file.close()
    if checkpoint_path and num_steps > start:
        write_checkpoint(state)
    return TrainResult(theta=state.theta, history=history, state=state)
