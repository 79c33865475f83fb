"""lopt: meta-learned optimizers in JAX.

The four nouns (DESIGN.md): :class:`lopt.tasks.Task`, :class:`lopt.tasks.TaskFamily`,
:class:`lopt.rules.UpdateRule` and :class:`lopt.outer.Estimator`.
"""
from lopt import outer, rules, tasks
from lopt.files.published import import_weights
from lopt.files.rule_file import load, save
from lopt import mup
from lopt.harness import celo2_chain, param_labels, scale_by_celo2, velo_chain
from lopt.optax_adapter import as_optax
from lopt.outer.base import Estimator
from lopt.rules.base import UpdateRule
from lopt.tasks.base import Task, TaskFamily

__version__ = "0.2.0"

__all__ = ["as_optax", "scale_by_celo2", "celo2_chain", "velo_chain", "param_labels", "import_weights", "save", "load", "Task", "TaskFamily", "UpdateRule", "Estimator", "rules",
           "tasks", "outer", "mup"]
