"""The evaluation protocol's constants, defined once (DESIGN.md: Evaluation protocol): the seeds
that draw tuning and evaluation instances, and the learning-rate grids baselines are tuned on.

Baselines are tuned on instances of ``TUNE_SEED`` and every reported number comes from the
separate instances of ``EVAL_SEED``; the normalization reference (initial loss 1, tuned Adam's
best 0) is tuned on instances of its own seed, ``NORMALIZATION_SEED``.
"""
from __future__ import annotations

import numpy as np

EVAL_SEED = 12345  # evaluation instances: every reported number
TUNE_SEED = 54321  # tuning instances of the baselines: never reported
NORMALIZATION_SEED = 0x7A5C  # tuning instances of the normalization reference
SEARCH_SEED = 0  # the hyperparameter draws of random-search baselines
META_VALID_SEED = 0x3A11D  # meta-validation instances of the meta-training families


def log_grid(low: float, high: float, points: int) -> tuple:
    """``points`` learning rates log-spaced from 10**low to 10**high, as Python floats."""
    return tuple(float(x) for x in np.logspace(low, high, points))


# Learning-rate grids. Each is the one its results were made with; they differ in density
# because a grid's cost multiplies every baseline's tuning runs.
LR_GRID = log_grid(-4, 1, 21)  # lopt.evaluation's default: 4 points a decade, 1e-4 … 10
SUITE_LR_GRID = log_grid(-4, 1, 11)  # the paper suites: 2 points a decade
NORMALIZATION_GRID = log_grid(-4, 0, 9)  # the normalization reference's Adam: 2 points a decade
META_TEST_GRID = log_grid(-4, 0, 14)  # lopt bench pretrained: 14 points, 1e-4 … 1
