"""lopt's optax entry point: any UpdateRule (a learned one, a ``.lopt`` file, a shipped name) as
an optax transformation (``as_optax``), the published optimizers' harness chains (Celo2's,
VeLO's) and the optax half of μP (μLO's chain)."""
from __future__ import annotations

from lopt.optax_adapter.chains import (
    celo2_chain,
    coupled_weight_decay,
    param_labels,
    rule_and_theta,
    scale_by_celo2,
    velo_chain,
)
from lopt.optax_adapter.mup_chain import mulo_chain, mup_lr_multipliers
from lopt.optax_adapter.transformation import as_optax, float_leaves, load_named

__all__ = ["as_optax", "load_named", "float_leaves", "rule_and_theta", "scale_by_celo2",
           "param_labels", "celo2_chain", "coupled_weight_decay", "velo_chain", "mulo_chain",
           "mup_lr_multipliers"]
