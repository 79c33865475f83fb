"""Tasks and task families (DESIGN.md: Task, TaskFamily)."""
from lopt.tasks.augment import random_scaling, with_convex
from lopt.tasks.base import Task, TaskFamily, fixed_family
from lopt.tasks.mlp import mlp_classifier, mlp_family
from lopt.tasks.quadratic import quadratic_family

FAMILIES = {
    "quadratic": (quadratic_family, "random 10x10 least squares ‖Wθ − y‖² (L2L, seed 001)"),
    "digits_mlp": (mlp_family, "MLP (20 sigmoid units) on the 8x8 digits, minibatch 128"),
    "quadratic_augmented": (lambda: with_convex(random_scaling(quadratic_family())),
                            "quadratics with RNNprop's random scaling and an added random "
                            "convex function (seed 004)"),
}


def make_family(name: str) -> TaskFamily:
    """The task family registered under ``name``."""
    if name not in FAMILIES:
        raise ValueError(f"task must be one of {sorted(FAMILIES)}, got {name!r}")
    return FAMILIES[name][0]()


__all__ = ["Task", "TaskFamily", "fixed_family", "random_scaling", "with_convex", "mlp_classifier", "mlp_family",
           "quadratic_family", "FAMILIES", "make_family"]
