"""lopt: meta-learned optimizers in JAX.

The four nouns (DESIGN.md): :class:`lopt.tasks.Task`, :class:`lopt.tasks.TaskFamily`,
:class:`lopt.rules.UpdateRule` and :class:`lopt.outer.Estimator`.

The names below are imported on first use (PEP 562), so ``import lopt`` — and the ``lopt``
command, which must catch Ctrl-C from its first instant — does not wait for jax.
"""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from typing import TYPE_CHECKING

__version__ = "0.2.0"

# name -> the module it lives in (a module itself when the name is the module's last part).
_EXPORTS = {
    "as_optax": "lopt.optax_adapter.transformation",
    "scale_by_celo2": "lopt.optax_adapter.chains", "celo2_chain": "lopt.optax_adapter.chains",
    "velo_chain": "lopt.optax_adapter.chains", "param_labels": "lopt.optax_adapter.chains",
    "import_weights": "lopt.files.published",
    "save": "lopt.files.rule_file", "load": "lopt.files.rule_file",
    "Task": "lopt.tasks.base", "TaskFamily": "lopt.tasks.base",
    "UpdateRule": "lopt.rules.base", "Estimator": "lopt.outer.base",
    "rules": "lopt.rules", "tasks": "lopt.tasks", "outer": "lopt.outer", "mup": "lopt.mup",
}
__all__ = list(_EXPORTS)

# Modules that moved, old name -> (where it is now, the lopt version that drops the old name):
# ``import lopt.harness`` and ``from lopt.recipes import RECIPES`` keep working until then.
MOVED_MODULES = {
    "lopt.harness": ("lopt.optax_adapter.chains", "0.4"),
    "lopt.recipes": ("lopt.pretrained.recipes", "0.4"),
}


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves a moved module's old name to the module itself (one object under both names),
    with a DeprecationWarning that says where it went and when the old name goes."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED_MODULES:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        new, removed_in = MOVED_MODULES[spec.name]
        warnings.warn(f"{spec.name} is {new} now; the old name is removed in lopt {removed_in}",
                      DeprecationWarning, stacklevel=2)
        return importlib.import_module(new)

    def exec_module(self, module) -> None:
        pass  # the module it names has run already


if not any(isinstance(f, _MovedModules) for f in sys.meta_path):
    sys.meta_path.append(_MovedModules())


def __getattr__(name: str):
    if name in _EXPORTS:
        where = _EXPORTS[name]
        module = importlib.import_module(where)
        value = module if where == f"lopt.{name}" else getattr(module, name)
    elif f"lopt.{name}" in MOVED_MODULES:
        value = importlib.import_module(f"lopt.{name}")
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
    from lopt.optax_adapter.chains import celo2_chain, param_labels, scale_by_celo2, velo_chain  # noqa: F401
    from lopt.optax_adapter.transformation import as_optax  # noqa: F401
    from lopt.outer.base import Estimator  # noqa: F401
    from lopt.rules.base import UpdateRule  # noqa: F401
    from lopt.tasks.base import Task, TaskFamily  # noqa: F401
