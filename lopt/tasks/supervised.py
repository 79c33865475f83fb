"""Tasks that fit a model to a Dataset: minibatches drawn on the device from the key, the
validation split behind ``valid_loss``, the whole test split behind ``test_metrics``.

Every such family has the same vmappable cfg, which the augmentation wrappers of
``lopt.tasks.augment`` edit: ``init_scale`` and ``loss_scale`` (per-instance scalars), ``subset``
(the train examples this instance may draw, when the family uses data subsets), ``label_noise``
(classifiers only: probability that a train label is replaced by a uniformly drawn class, fixed per
instance and example) and ``batch_keep`` (how many of the ``batch_size`` examples count: a reduced
batch size).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import jax
import jax.numpy as jnp

from lopt.tasks.base import Task, TaskFamily
from lopt.tasks.datasets import Dataset

TEST_CHUNK = 500


@dataclasses.dataclass(frozen=True)
class Model:
    """``init(key, x) -> (params, state)``; ``apply(params, state, x, key, train) -> (out,
    state)``; ``objective(out, x, y) -> (per-example loss, per-example correct or None)``."""

    init: Callable
    apply: Callable
    objective: Callable
    stateful: bool = False


def log_uniform(key, low: float, high: float):
    """exp(U(log low, log high)); exactly ``low`` when low == high."""
    if low == high:
        return jnp.asarray(low, jnp.float32)
    return jnp.exp(jax.random.uniform(key, (), minval=jnp.log(low), maxval=jnp.log(high)))


def supervised_family(name: str, data: Dataset, model: Model, *, batch_size: int,
                      subset_size: Optional[int] = None, init_scale=(1.0, 1.0),
                      loss_scale=(1.0, 1.0)) -> TaskFamily:
    """The family of ``model`` trained on ``data`` with minibatches of ``batch_size``.

    Per instance, ``init_scale`` and ``loss_scale`` are drawn log-uniformly from their ranges
    and, with ``subset_size``, the instance trains on its own random subset of the train split.
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}")
    n_train = int(data.train_x.shape[0])
    if subset_size is not None and not 1 <= int(subset_size) <= n_train:
        raise ValueError(f"subset_size must be between 1 and the {n_train} train examples of "
                         f"{data.name}; got {subset_size!r}")
    for label, (lo, hi) in (("init_scale", init_scale), ("loss_scale", loss_scale)):
        if not 0 < lo <= hi:
            raise ValueError(f"{label} must be a range 0 < low <= high; got {(lo, hi)}")
    classification = data.kind == "classification"

    def sample(key):
        k_init, k_loss, k_noise, k_subset = jax.random.split(key, 4)
        cfg = {"init_scale": log_uniform(k_init, *init_scale),
               "loss_scale": log_uniform(k_loss, *loss_scale),
               "batch_keep": jnp.asarray(batch_size, jnp.int32)}
        if classification:
            cfg["label_noise"] = jnp.zeros((), jnp.float32)
            cfg["noise_key"] = k_noise
        if subset_size is not None:
            cfg["subset"] = jax.random.permutation(k_subset, n_train)[:subset_size]
        return cfg

    def build(cfg):
        def init(key):
            params, _ = model.init(key, data.train_x[:1])
            return jax.tree.map(lambda p: p * cfg["init_scale"].astype(p.dtype), params)

        def init_state(key):
            return model.init(key, data.train_x[:1])[1]

        def train_batch(key, dtype):
            pool = cfg["subset"].shape[0] if "subset" in cfg else n_train
            k_idx, k_model = jax.random.split(key)
            idx = jax.random.randint(k_idx, (batch_size,), 0, pool)
            if "subset" in cfg:
                idx = cfg["subset"][idx]
            y = data.train_y[idx]
            if classification:
                y = noisy_labels(cfg["noise_key"], cfg["label_noise"], idx, y,
                                 data.num_classes)
            return _as(data.train_x[idx], dtype), y, k_model

        def weighted_mean(values):
            keep = (jnp.arange(batch_size) < cfg["batch_keep"]).astype(values.dtype)
            return jnp.sum(values * keep) / jnp.maximum(jnp.sum(keep), 1.0)

        def loss_and_state(params, state, key):
            x, y, k_model = train_batch(key, _float_dtype(params))
            out, state = model.apply(params, state, x, k_model, True)
            per_example, _ = model.objective(_as(out, jnp.float32), x, y)
            return cfg["loss_scale"] * weighted_mean(per_example), state

        def loss(params, key):
            # Training mode normalizes with batch statistics, so the values of the carried
            # statistics do not enter the loss: zeros of the right structure stand in.
            template = jax.eval_shape(init_state, jax.random.PRNGKey(0)) if model.stateful \
                else {}
            state = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), template)
            return loss_and_state(params, state, key)[0]

        def valid_loss(params, state, key):
            k_idx, k_model = jax.random.split(key)
            idx = jax.random.randint(k_idx, (batch_size,), 0, data.valid_x.shape[0])
            x = _as(data.valid_x[idx], _float_dtype(params))
            out, _ = model.apply(params, state, x, k_model, False)
            per_example, _ = model.objective(_as(out, jnp.float32), x, data.valid_y[idx])
            return cfg["loss_scale"] * jnp.mean(per_example)

        def test_metrics(params, state=None):
            state = {} if state is None and not model.stateful else state
            return full_split_metrics(model, params, state, data.test_x, data.test_y,
                                      cfg["loss_scale"])

        if model.stateful:
            return Task(init=init, loss=loss, init_state=init_state,
                        loss_and_state=loss_and_state, valid_loss_with_state=valid_loss,
                        test_metrics=test_metrics)
        return Task(init=init, loss=loss, valid_loss=lambda p, k: valid_loss(p, {}, k),
                    test_metrics=test_metrics)

    return TaskFamily(sample=sample, build=build, name=name, datasets=(data.name,))


def _float_dtype(params):
    """The dtype activations are computed in: the parameters' (float32 unless a task runs in
    low precision, ``lopt.tasks.augment.low_precision``)."""
    floats = [x.dtype for x in jax.tree.leaves(params) if jnp.issubdtype(x.dtype, jnp.floating)]
    return floats[0] if floats else jnp.float32


def _as(tree, dtype):
    """Floating arrays in ``dtype`` (a no-op when they are in it); integers (tokens) unchanged."""
    return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating)
                        else x, tree)


def noisy_labels(noise_key, rate, idx, y, num_classes):
    """Labels of train examples ``idx`` after label noise: example i's label is replaced by a
    uniformly drawn class with probability ``rate``. The draw is keyed by (instance key, i),
    so an example keeps the same label in every minibatch of the run."""
    def draw(i):
        k_flip, k_label = jax.random.split(jax.random.fold_in(noise_key, i))
        return (jax.random.uniform(k_flip) < rate,
                jax.random.randint(k_label, (), 0, num_classes, dtype=y.dtype))

    flip, noisy = jax.vmap(draw)(idx)
    return jnp.where(flip, noisy, y)


def full_split_metrics(model: Model, params, state, x, y, loss_scale=1.0) -> dict:
    """Mean loss (and accuracy for classifiers) over every example of (x, y), in chunks."""
    n = x.shape[0]
    chunks = -(-n // TEST_CHUNK)
    pad = chunks * TEST_CHUNK - n
    xp = jnp.concatenate([x, jnp.repeat(x[:1], pad, axis=0)]).reshape(
        (chunks, TEST_CHUNK) + x.shape[1:])
    yp = jnp.concatenate([y, jnp.repeat(y[:1], pad, axis=0)]).reshape(
        (chunks, TEST_CHUNK) + y.shape[1:])
    valid = (jnp.arange(chunks * TEST_CHUNK) < n).reshape(chunks, TEST_CHUNK)

    def one(args):
        xc, yc, vc = args
        xc = _as(xc, _float_dtype(params))
        out, _ = model.apply(params, state, xc, jax.random.PRNGKey(0), False)
        losses, correct = model.objective(_as(out, jnp.float32), xc, yc)
        sums = (jnp.sum(jnp.where(vc, losses, 0.0)),)
        # Whether the objective reports correctness is known when tracing: only classifiers
        # return an accuracy sum.
        return sums if correct is None else sums + (jnp.sum(jnp.where(vc, correct, 0.0)),)

    sums = jax.lax.map(one, (xp, yp, valid))
    metrics = {"loss": loss_scale * jnp.sum(sums[0]) / n}
    if len(sums) == 2:
        metrics["accuracy"] = jnp.sum(sums[1]) / n
    return metrics
