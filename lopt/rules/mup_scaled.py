"""A rule whose every tensor's update is multiplied by a μP learning-rate multiplier computed
from the parameters (μLO, Thérien et al. 2026: the rule's step times the model's per-tensor
multiplier, so meta-training at one width transfers to others)."""
from __future__ import annotations

from typing import Callable

import jax

from lopt.rules.base import UpdateRule


def scale_leaves(updates, multipliers):
    """Each update leaf times its multiplier, in the update's own dtype."""
    return jax.tree.map(lambda u, m: (u * m).astype(u.dtype), updates, multipliers)


def mup_scaled(rule: UpdateRule, multipliers_of: Callable) -> UpdateRule:
    """``rule`` with each update leaf times ``multipliers_of(params)``'s leaf (a tree of
    numbers with the parameters' structure, from their shapes: e.g.
    ``lopt.tasks.mup.mup_multipliers``). The name and config stay the inner rule's, so a
    saved file holds the rule itself and the multipliers, the model's, are applied where it is
    used (``lopt.mup.mulo_chain``)."""
    def update(theta, state, grads, params, loss=None):
        if params is None:
            raise ValueError("a μP-scaled rule reads the parameters' shapes: pass params")
        updates, state = rule.update(theta, state, grads, params, loss)
        return scale_leaves(updates, multipliers_of(params)), state

    return UpdateRule(init_meta=rule.init_meta, init=rule.init, update=update, name=rule.name,
                      config=rule.config, wants_valid_loss=rule.wants_valid_loss,
                      eval_params=rule.eval_params, wants_num_steps=rule.wants_num_steps)
