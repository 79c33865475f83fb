"""The Estimator noun of DESIGN.md: an outer-gradient estimator over a batch of inner runs."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable


@dataclasses.dataclass(frozen=True)
class Estimator:
    """``init(key, theta) -> est_state`` (a batch of truncated inner runs) and
    ``grad(theta, est_state, key) -> (meta_grad, est_state, metrics)``."""

    init: Callable[[Any, Any], Any]
    grad: Callable[[Any, Any, Any], tuple]
    name: str = "estimator"


def option(default, *, flag: str, run: bool = True, type=None):
    """A field of an estimator config that ``lopt train`` offers as ``--NAME``, declared where
    the estimator is: ``flag`` its help line, ``run`` whether it shapes the meta-training
    trajectory (a resume must match it), ``type`` its value's type when the default (None) does
    not tell. The estimator's ``__post_init__`` checks its range; the CLI checks nothing again."""
    metadata = {"flag": flag, "shapes_run": run}
    if type is not None:
        metadata["type"] = type
    return dataclasses.field(default=default, metadata=metadata)


def options_of(cls) -> dict:
    """The fields of estimator config class ``cls`` that it offers as flags, by name."""
    return {f.name: f for f in dataclasses.fields(cls) if "flag" in f.metadata}
