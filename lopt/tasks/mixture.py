"""A mixture of structurally different task families, meta-trained together."""
from __future__ import annotations

import dataclasses
from typing import Tuple

from lopt.tasks.base import TaskFamily


@dataclasses.dataclass(frozen=True)
class Mixture:
    """Several TaskFamilies whose instances cannot share one vmap (different parameter
    shapes). Meta-training gives each family an equal share of the inner runs and every outer
    step unrolls all of them inside one jitted call (``lopt.outer.mixture``)."""

    families: Tuple[TaskFamily, ...]
    name: str = "mixture"

    def __post_init__(self):
        if len(self.families) < 1:
            raise ValueError("a mixture needs at least one task family")
        names = [f.name for f in self.families]
        if len(set(names)) != len(names):
            raise ValueError(f"mixture families must be distinct; got {names}")
