"""The optax half of μP for learned optimizers (μLO: Thérien et al. 2026, "μLO: compute-efficient
meta-generalization of learned optimizers"; bentherien/mu_learned_optimization at e160d54): each
tensor's learned step multiplied by its μP learning-rate multiplier, so a rule meta-trained at
one width steps correctly at another.

μLO's ``MuAdafacMLPLOpt`` is small_fc_lopt (``adafac_mlp``) with non-finite gradients zeroed
(``jnp.nan_to_num``) and the step of each tensor scaled by the multiplier the μP model reports
(``MuMLP``: hidden_lr_mult / fan-in for hidden matrices, 1 for the input and output layers and
every bias). The step is linear in the multiplier, so it is the rule followed by a per-tensor
scale: ``mulo_chain``. The rule-times-task half (meta-training on μP tasks) is
``lopt.outer.mup_rule``.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from lopt.optax_adapter.chains import rule_and_theta
from lopt.optax_adapter.transformation import as_optax
from lopt.rules.mup_scaled import scale_leaves


def finite_gradients() -> optax.GradientTransformation:
    """Gradients through ``jnp.nan_to_num`` (NaN → 0, ±inf → the largest finite float), as
    μLO feeds its rule."""
    return optax.stateless(lambda updates, params=None: jax.tree.map(jnp.nan_to_num, updates))


def scale_updates(multipliers) -> optax.GradientTransformation:
    """Each leaf's update times its multiplier (a tree of numbers with the parameters'
    structure)."""
    return optax.stateless(lambda updates, params=None: scale_leaves(updates, multipliers))


def mup_lr_multipliers(params, base_params, hidden_lr_mult: float = 1.0):
    """μLO's multipliers for a model at ``params``' widths, whose base-width version is
    ``base_params``: hidden_lr_mult / fan-in for every matrix whose two axes both change with
    width (a hidden layer; kernels are [fan-in, fan-out] as in flax and haiku), 1 for the rest
    (the input and output layers, whose one width axis is fixed, biases and norms)."""
    def one(p, base):
        hidden = p.ndim == 2 and all(a != b for a, b in zip(p.shape, base.shape))
        return hidden_lr_mult / p.shape[0] if hidden else 1.0

    return jax.tree.map(one, params, base_params)


def mulo_chain(source, multipliers, num_steps=None) -> optax.GradientTransformationExtraArgs:
    """μLO's update: finite gradients, the rule (a .lopt — e.g. ``lopt import adafac_mlp`` of a
    μLO checkpoint — a pretrained name or ``(rule, theta)``), then each tensor's step times its
    μP multiplier (``mup_lr_multipliers``). μLO's optional global-norm clip (``clip_grad``, off
    by default) is ``optax.clip_by_global_norm(1.0)`` in front."""
    rule, theta = rule_and_theta(source)
    return optax.chain(finite_gradients(), as_optax(rule, theta, num_steps=num_steps),
                       scale_updates(multipliers))
