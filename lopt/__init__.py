"""lopt: meta-learned optimizers in JAX.

The four nouns (DESIGN.md): :class:`lopt.tasks.Task`, :class:`lopt.tasks.TaskFamily`,
:class:`lopt.rules.UpdateRule` and :class:`lopt.outer.Estimator`.

The names below are imported on first use (PEP 562), so ``import lopt`` — and the ``lopt``
command, which must catch Ctrl-C from its first instant — does not wait for jax.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.2.0"

# name -> the module it lives in (a module itself when the name is the module's last part).
_EXPORTS = {
    "as_optax": "lopt.optax_adapter", "scale_by_celo2": "lopt.harness",
    "celo2_chain": "lopt.harness", "velo_chain": "lopt.harness",
    "param_labels": "lopt.harness", "import_weights": "lopt.files.published",
    "save": "lopt.files.rule_file", "load": "lopt.files.rule_file",
    "Task": "lopt.tasks.base", "TaskFamily": "lopt.tasks.base",
    "UpdateRule": "lopt.rules.base", "Estimator": "lopt.outer.base",
    "rules": "lopt.rules", "tasks": "lopt.tasks", "outer": "lopt.outer", "mup": "lopt.mup",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        where = _EXPORTS[name]
        module = importlib.import_module(where)
        value = module if where == f"lopt.{name}" else getattr(module, name)
    elif not name.startswith("__"):
        try:  # a submodule (lopt.pretrained, lopt.recipes, ...) reached as an attribute
            value = importlib.import_module(f"lopt.{name}")
        except ModuleNotFoundError as err:
            if err.name != f"lopt.{name}":
                raise
            raise AttributeError(f"module 'lopt' has no attribute {name!r}") from None
    else:
        raise AttributeError(f"module 'lopt' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # what static tools see
    from lopt import mup, outer, rules, tasks  # noqa: F401
    from lopt.files.published import import_weights  # noqa: F401
    from lopt.files.rule_file import load, save  # noqa: F401
    from lopt.harness import celo2_chain, param_labels, scale_by_celo2, velo_chain  # noqa: F401
    from lopt.optax_adapter import as_optax  # noqa: F401
    from lopt.outer.base import Estimator  # noqa: F401
    from lopt.rules.base import UpdateRule  # noqa: F401
    from lopt.tasks.base import Task, TaskFamily  # noqa: F401
