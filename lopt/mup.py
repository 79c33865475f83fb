"""μP for learned optimizers (μLO: Thérien et al. 2026, "μLO: compute-efficient meta-
generalization of learned optimizers"; bentherien/mu_learned_optimization at e160d54): each
tensor's learned step multiplied by its μP learning-rate multiplier, so a rule meta-trained at
one width steps correctly at another.

μLO's ``MuAdafacMLPLOpt`` is small_fc_lopt (``adafac_mlp``) with non-finite gradients zeroed
(``jnp.nan_to_num``) and the step of each tensor scaled by the multiplier the μP model reports
(``MuMLP``: hidden_lr_mult / fan-in for hidden matrices, 1 for the input and output layers and
every bias). The step is linear in the multiplier, so it is the rule followed by a per-tensor
scale: ``mulo_chain``. To meta-train such a rule in lopt, ``mup_rule_for(rule, family)`` on a
μP family of ``lopt.tasks.mup`` (whose tasks carry their model's multipliers; ``lopt train
--mup``).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from lopt.harness import rule_and_theta
from lopt.optax_adapter import as_optax
from lopt.rules.mup_scaled import mup_scaled as mup_rule  # noqa: F401  (re-exported)
from lopt.rules.mup_scaled import scale_leaves
from lopt.tasks.mixture import Mixture
from lopt.tasks.mup import mup_multipliers, mup_transformer_multipliers  # noqa: F401  (re-exported)


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


def task_multipliers(family) -> Callable:
    """The μP step multipliers (``Task.step_multipliers``) that every task of ``family`` (a
    TaskFamily or a Mixture) carries; a ValueError naming the family when one has none, or
    when a mixture's families are parameterized differently."""
    families = family.families if isinstance(family, Mixture) else (family,)
    found = {}
    for f in families:
        fn = f.build(f.sample(jax.random.PRNGKey(0))).step_multipliers
        if fn is None:
            raise ValueError(f"mup needs μP tasks (mup_mlp_wWIDTH, mup_transformer_wWIDTH, "
                             f"mup_mlp@SEED, mup_transformer@SEED); {f.name!r} has no μP "
                             "step multipliers")
        found.setdefault(fn, f.name)
    if len(found) > 1:
        raise ValueError(f"mup needs one μP parameterization for the whole mixture; "
                         f"{' and '.join(found.values())} differ")
    return next(iter(found))


def mup_rule_for(rule, family):
    """``rule`` with each step times the μP multipliers of ``family``'s model
    (``task_multipliers``): what ``lopt train --mup`` meta-trains."""
    return mup_rule(rule, task_multipliers(family))
