"""μP for learned optimizers (μLO), as lopt 0.2 imported it: ``lopt.mup.*`` keeps working.

The optax half lives in ``lopt.optax_adapter.mup_chain`` and the rule-times-task half in
``lopt.outer.mup_rule`` (DESIGN.md's layout); this module re-exports both, and stays as long as
``lopt.mup`` is a documented name (docs/rules/mulo.md).
"""
from __future__ import annotations

from lopt.optax_adapter.mup_chain import (  # noqa: F401  (re-exported)
    finite_gradients,
    mulo_chain,
    mup_lr_multipliers,
    scale_updates,
)
from lopt.outer.mup_rule import mup_rule, mup_rule_for, task_multipliers  # noqa: F401
from lopt.tasks.mup import mup_multipliers, mup_transformer_multipliers  # noqa: F401
