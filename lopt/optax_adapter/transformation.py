"""A learned (or any) UpdateRule as an optax GradientTransformationExtraArgs."""
from __future__ import annotations

import os
from typing import Union

import jax
import jax.numpy as jnp
import optax

from lopt.files.rule_file import load
from lopt.pretrained import path as pretrained_path
from lopt.rules.base import UpdateRule, theta_mismatch


def as_optax(rule: Union[UpdateRule, str], theta=None,
             num_steps=None) -> optax.GradientTransformationExtraArgs:
    """``rule`` with fixed meta-parameters ``theta`` as an optax transformation.

    ``num_steps``: the number of training steps, for rules that schedule their steps over the
    run (``rule.wants_num_steps``, e.g. celo); others ignore it.

    ``rule`` may also be a pretrained name (``lopt list`` shows them) or the path of a file
    written by ``lopt.save``; theta is then read from it.
    The loss reaches rules that use it as the keyword ``value=``, as for optax's
    ``reduce_on_plateau``: ``tx.update(grads, state, params, value=loss)``.
    """
    if isinstance(rule, os.PathLike):
        rule = os.fspath(rule)
    if isinstance(rule, str):
        if theta is not None:
            raise ValueError("theta must not be given together with a saved rule's path")

        rule, theta = load_named(rule)
    if not isinstance(rule, UpdateRule):
        raise TypeError(f"rule must be an UpdateRule, a pretrained name or a rule file's path; "
                        f"got {type(rule).__name__} {rule!r:.60}")
    if theta is None:
        template = jax.eval_shape(rule.init_meta, jax.random.PRNGKey(0))
        if not jax.tree.leaves(template):
            theta = template
        else:
            raise ValueError(f"rule {rule.name!r} is learned: pass its theta (or a saved file)")
    problem = theta_mismatch(rule, theta)
    if problem:
        raise ValueError(f"theta does not match rule {rule.name!r}: {problem}")
    if num_steps is not None and (isinstance(num_steps, bool) or not isinstance(num_steps, int)
                                  or num_steps < 1):
        raise ValueError(f"num_steps must be a positive integer; got {num_steps!r}")

    if rule.wants_num_steps and num_steps is None:
        rule.start(theta, None)  # raises the one-line error now, not at the first init

    # Learned rules read the parameters (their features, or at least their shapes); optax's
    # hand-designed ones raise their own errors when they need them.
    learned = bool(jax.tree.leaves(theta))

    def init_fn(params):
        _check_leaves(params, "params", learned)
        if not _any_float(params):  # nothing to update: no statistics to keep
            return optax.EmptyState()
        return rule.start(theta, float_leaves(params), num_steps)

    def update_fn(updates, state, params=None, *, value=None, **extra_args):
        del extra_args
        if params is None and learned:
            raise ValueError(f"rule {rule.name!r} reads the parameters: call "
                             f"tx.update(grads, state, params), not tx.update(grads, state)")
        _check_leaves(updates, "grads", learned)
        if params is not None:
            _check_leaves(params, "params", learned)
            _check_match(updates, params)
        if isinstance(state, optax.EmptyState) and not _any_float(updates):
            return jax.tree.map(jnp.zeros_like, updates), state
        if _all_float(updates):
            new, state = rule.update(theta, state, updates, params, value)
            return _in_dtypes_of(new, updates), state
        # As optax leaves integer and boolean parameters alone: zero updates, no state (and
        # so for empty leaves).
        new, state = rule.update(theta, state, float_leaves(updates),
                                 None if params is None else float_leaves(params), value)
        return _merge(updates, new), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def load_named(source: str) -> tuple:
    """(rule, theta) from a rule file's path or a pretrained optimizer's name; a string that
    looks like a path (a folder separator or the .lopt suffix) is read as one, so a missing
    file is named as missing."""
    looks_like_path = os.sep in source or source.endswith(".lopt")
    return load(source if os.path.exists(source) or looks_like_path
                else pretrained_path(source))


def _is_float(x) -> bool:
    """Whether the rule updates leaf ``x``: a float leaf with at least one coordinate. An empty
    leaf has no update to give, and a rule's per-tensor statistics (an RMS, a mean) of it
    would be NaN and spread to every other leaf through cross-tensor features."""
    return jnp.issubdtype(jnp.result_type(x), jnp.inexact) and jnp.size(x) > 0


def _check_leaves(tree, what: str, learned: bool) -> None:
    """One line naming the first leaf a rule cannot take: a Python number (no dtype or shape
    to keep state in) or, for a learned rule, a complex array (its features order and clip
    values)."""
    for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
        where = f"{what}{jax.tree_util.keystr(path)}"
        if not hasattr(x, "dtype") or not hasattr(x, "shape"):
            raise TypeError(f"{where} is a Python {type(x).__name__}: every leaf must be an "
                            "array (jnp.asarray(...)); integer and boolean arrays are left "
                            "alone, float arrays are updated")
        if learned and jnp.issubdtype(x.dtype, jnp.complexfloating):
            raise TypeError(f"{where} is {x.dtype}: a learned rule updates real floating-point "
                            "leaves (integer and boolean ones are left alone); split it into "
                            "real and imaginary parts")


def _check_match(updates, params) -> None:
    """One line naming the first gradient whose structure or shape differs from its
    parameter's."""
    flat_u, tree_u = jax.tree_util.tree_flatten_with_path(updates)
    flat_p, tree_p = jax.tree_util.tree_flatten_with_path(params)
    if tree_u != tree_p:
        raise ValueError(f"grads and params must have the same structure; grads is {tree_u}, "
                         f"params is {tree_p}")
    for (path, u), (_, p) in zip(flat_u, flat_p):
        if tuple(u.shape) != tuple(p.shape):
            raise ValueError(f"grads{jax.tree_util.keystr(path)} has shape {tuple(u.shape)}, "
                             f"params{jax.tree_util.keystr(path)} has {tuple(p.shape)}: each "
                             "gradient must have its parameter's shape")


def _any_float(tree) -> bool:
    return any(_is_float(x) for x in jax.tree.leaves(tree))


def _all_float(tree) -> bool:
    return all(_is_float(x) for x in jax.tree.leaves(tree))


def float_leaves(tree):
    """``tree`` with every non-float leaf (integer, boolean, float0) and every empty one
    replaced by an empty ``optax.MaskedNode``, which the rule's tree maps skip."""
    if _all_float(tree):
        return tree
    return jax.tree.map(lambda x: x if _is_float(x) else optax.MaskedNode(), tree)


def _in_dtypes_of(new, updates):
    """``new`` cast leaf by leaf to the dtypes of the gradients it answers, as optax returns
    updates (a rule computing in float32 for bfloat16 parameters must not promote them)."""
    return jax.tree.map(lambda u, g: u.astype(jnp.result_type(g)), new, updates)


def _merge(updates, new):
    """The rule's updates for float leaves (in their gradients' dtypes), zeros of the leaf's
    own dtype for the others."""
    flat, treedef = jax.tree_util.tree_flatten(updates)
    masked = jax.tree.leaves(new)
    it = iter(masked)
    out = [next(it).astype(jnp.result_type(x)) if _is_float(x) else jnp.zeros_like(x)
           for x in flat]
    return jax.tree_util.tree_unflatten(treedef, out)
