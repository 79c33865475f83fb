"""The rule-times-task half of μP for learned optimizers (μLO: Thérien et al. 2026): a rule whose
every step is multiplied by the μP multipliers its task's model carries, which is what ``lopt
train --mup`` meta-trains on a μP family of ``lopt.tasks.mup``. The optax half (stepping a μLO
rule in a user's training loop) is ``lopt.optax_adapter.mup_chain``.
"""
from __future__ import annotations

from typing import Callable

import jax

from lopt.rules.mup_scaled import mup_scaled as mup_rule
from lopt.tasks.mixture import Mixture


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
