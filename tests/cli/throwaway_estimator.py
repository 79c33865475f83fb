"""An estimator that exists only to be registered by a test: TBPTT with its meta-gradient
multiplied by ``scale``, an option it declares itself. ``python throwaway_estimator.py ARGS``
registers it in ``lopt.outer.ESTIMATORS`` (as a plugin would, before the CLI loads) and runs
``lopt ARGS``."""
import dataclasses
import sys

import jax

import lopt.outer
from lopt.outer.base import Estimator, option


@dataclasses.dataclass(frozen=True)
class ScaledTBPTT(lopt.outer.TBPTT):
    """TBPTT's meta-gradient times ``scale``."""

    scale: float = option(1.0, flag="the meta-gradient's multiplier")

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.scale, bool) or not 0 < self.scale <= 10:
            raise ValueError(f"scale must be a number in (0, 10], got {self.scale!r}")

    def build(self, rule, family, axis_name=None) -> Estimator:
        inner = super().build(rule, family, axis_name)

        def grad(theta, state, key):
            meta_grad, state, metrics = inner.grad(theta, state, key)
            return jax.tree.map(lambda g: self.scale * g, meta_grad), state, metrics

        return Estimator(init=inner.init, grad=grad, name="scaled_tbptt")


if __name__ == "__main__":
    lopt.outer.ESTIMATORS["scaled_tbptt"] = (ScaledTBPTT, "TBPTT times a declared scale")
    from lopt.cli import main

    sys.exit(main(sys.argv[1:]))
