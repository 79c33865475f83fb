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
