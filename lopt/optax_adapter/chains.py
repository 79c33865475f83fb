"""Training harnesses of the published learned optimizers in optax: Celo2's (the learned step as
an optax ``scale_by_`` transformation, AdamW for vectors and embeddings through
``optax.multi_transform``) and VeLO's prefab (weight decay, gradient accumulation past its
trained horizon), each in one call.

Celo2 (Moudgil et al. 2026) leaves the learning rate, its schedule and weight decay to the
user and routes 1-D parameters to Adam (amoudgl/celo ``celo2.Celo2``: a regex on parameter
paths, Adam with β = (0.9, 0.95), ε = 1e-8 and 20× the learning rate).
"""
from __future__ import annotations

import math
import os
from typing import Callable, Union

import jax
import optax

from lopt.optax_adapter.transformation import as_optax, load_named
from lopt.rules import make_rule
from lopt.rules.base import UpdateRule

CELO2_RULES = ("celo2", "celo2_base")
ADAMW = "adamw"
LEARNED = "learned"
EMBEDDING_NAMES = ("embed", "embedding", "wte", "wpe", "tok_embeddings")


def rule_and_theta(source) -> tuple:
    """(rule, theta) from a .lopt path, a pretrained name or the pair itself."""
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if isinstance(source, str):
        return load_named(source)
    if isinstance(source, tuple) and len(source) == 2 and isinstance(source[0], UpdateRule):
        return source
    raise TypeError(f"a learned optimizer must be a .lopt path, a pretrained name or (rule, "
                    f"theta); "
                    f"got {type(source).__name__}")


def scale_by_celo2(source) -> optax.GradientTransformationExtraArgs:
    """Celo2's step s itself (the reference's ``scale_by_celo2``: RMS ≈ 1 per tensor, to be
    scaled by a learning rate as optax's ``scale_by_adam``), from a ``.lopt`` file written by
    ``lopt import celo2 ...`` or ``lopt.save``, a pretrained name, or ``(rule, theta)``.
    Compose as ``optax.chain(lopt.scale_by_celo2(f), optax.add_decayed_weights(wd),
    optax.scale_by_learning_rate(schedule))``; ``lopt.as_optax`` of the same file instead
    returns lopt's convention, updates to add (−step_scale · s)."""
    rule, theta = rule_and_theta(source)
    if rule.name not in CELO2_RULES:
        raise ValueError(f"scale_by_celo2 needs a celo2 or celo2_base rule; got {rule.name!r}")
    direction = make_rule(rule.name, **{**rule.config, "step_scale": -1.0})
    return as_optax(direction, theta)


def param_labels(params, embedding_names=EMBEDDING_NAMES) -> object:
    """A tree of labels for ``optax.multi_transform``: ``"adamw"`` for leaves with fewer than
    two axes (biases, norms' scales) and for embedding tables (a path entry containing one of
    ``embedding_names``, case-insensitive), ``"learned"`` for the rest."""
    def label(path, leaf):
        keys = [str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))).lower()
                for k in path]
        is_embedding = any(name in key for key in keys for name in embedding_names)
        return ADAMW if leaf.ndim < 2 or is_embedding else LEARNED

    return jax.tree_util.tree_map_with_path(label, params)


def celo2_chain(source, learning_rate: Union[float, Callable], weight_decay: float = 0.0,
                adamw_lr_multiplier: float = 20.0,
                adamw_b1: float = 0.9, adamw_b2: float = 0.95, adamw_eps: float = 1e-8,
                labels: Callable = param_labels) -> optax.GradientTransformationExtraArgs:
    """Celo2's harness in one transformation: the learned step on matrices and conv kernels,
    decayed and scaled by ``learning_rate`` (a float or an optax schedule); AdamW on vectors,
    scalars and embeddings at ``adamw_lr_multiplier`` × the learning rate, with the same
    decoupled ``weight_decay`` (Celo2's harness: 20×, β = (0.9, 0.95), ε = 1e-8; optax's AdamW
    corrects its moments' bias where the harness's Adam does not). ``labels(params)`` routes
    the leaves (``param_labels`` by default). ``source``: the weights, as ``scale_by_celo2``."""
    schedule = learning_rate if callable(learning_rate) else (lambda _: learning_rate)
    learned = optax.chain(scale_by_celo2(rule_and_theta(source)),
                          optax.add_decayed_weights(weight_decay),
                          optax.scale_by_learning_rate(schedule))
    adamw = optax.adamw(lambda step: adamw_lr_multiplier * schedule(step), b1=adamw_b1,
                        b2=adamw_b2, eps=adamw_eps, weight_decay=weight_decay)
    return optax.multi_transform({LEARNED: learned, ADAMW: adamw}, labels)


VELO_MAX_STEPS = 150_000  # learned_optimization prefab's max_training_steps


def coupled_weight_decay(inner: optax.GradientTransformationExtraArgs,
                         weight_decay: float) -> optax.GradientTransformationExtraArgs:
    """``inner`` fed g + wd·θ and the loss + wd·Σθ² (learned_optimization's
    ``WeightDecayWrapper``, as VeLO's prefab uses it: an L2 term the rule also sees in its loss
    features)."""
    def update_fn(updates, state, params=None, *, value=None, **extra):
        if params is None:
            raise ValueError("weight decay reads the parameters: call tx.update(grads, state, "
                             "params)")
        updates = jax.tree.map(lambda g, p: g + weight_decay * p, updates, params)
        if value is not None:
            value = value + weight_decay * sum(jax.numpy.sum(jax.numpy.square(p))
                                               for p in jax.tree.leaves(params))
        return inner.update(updates, state, params, value=value, **extra)

    return optax.GradientTransformationExtraArgs(inner.init, update_fn)


def velo_chain(source, num_steps: int, weight_decay: float = 0.0,
               max_training_steps: int = VELO_MAX_STEPS) -> optax.GradientTransformation:
    """VeLO as learned_optimization's prefab runs it: the rule (a .lopt from ``lopt import
    lo-checkpoint``, a pretrained name or ``(rule, theta)``) told the run length; with
    ``weight_decay`` > 0 the L2 term of ``coupled_weight_decay``; past ``max_training_steps``
    (150,000, VeLO's trained horizon) gradients averaged over k = ⌈num_steps /
    max_training_steps⌉ steps by ``optax.MultiSteps`` and the rule told num_steps // k steps.
    (The prefab also averages the loss over the k steps; MultiSteps passes the last one.)"""
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer; got {num_steps!r}")
    rule, theta = rule_and_theta(source)
    k = math.ceil(num_steps / max_training_steps) if num_steps > max_training_steps else 1
    tx = as_optax(rule, theta, num_steps=num_steps // k)
    if weight_decay > 0:
        tx = coupled_weight_decay(tx, weight_decay)
    return optax.MultiSteps(tx, every_k_schedule=k).gradient_transformation() if k > 1 else tx
