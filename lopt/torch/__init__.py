"""lopt's learned optimizers in PyTorch (the optional ``lopt[torch]`` extra):
``lopt.torch.Optimizer(params, "celo2_graft", num_steps=N)`` runs a shipped or saved rule as a
``torch.optim.Optimizer``, from the same ``.lopt`` file, proven equal to the JAX rule on
fixtures the JAX rule wrote. Importing it does not import JAX; torch loads on first use of a
name, so ``lopt.torch.names`` reads without torch."""
from __future__ import annotations

import importlib

_EXPORTS = {"Optimizer": "lopt.torch.optimizer", "RULES": "lopt.torch.optimizer",
            "mup_param_groups": "lopt.torch.optimizer", "Celo2Chain": "lopt.torch.optimizer",
            "load": "lopt.torch.rule_file"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'lopt.torch' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
