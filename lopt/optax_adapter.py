"""A learned (or any) UpdateRule as an optax GradientTransformationExtraArgs."""
from __future__ import annotations

from typing import Union

import jax
import optax

from lopt.rules.base import UpdateRule


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
    if isinstance(rule, str):
        if theta is not None:
            raise ValueError("theta must not be given together with a saved rule's path")
        import os

        from lopt import pretrained
        from lopt.serialization import load

        rule, theta = load(rule if os.path.exists(rule) else pretrained.path(rule))
    if theta is None:
        template = jax.eval_shape(rule.init_meta, jax.random.PRNGKey(0))
        if not jax.tree.leaves(template):
            theta = template
        else:
            raise ValueError(f"rule {rule.name!r} is learned: pass its theta (or a saved file)")

    if rule.wants_num_steps and num_steps is None:
        rule.start(theta, None)  # raises the one-line error now, not at the first init

    def init_fn(params):
        return rule.start(theta, params, num_steps)

    def update_fn(updates, state, params=None, *, value=None, **extra_args):
        del extra_args
        return rule.update(theta, state, updates, params, value)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
