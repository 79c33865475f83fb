"""Outer (meta-) training: unrolls, estimators and the training loop (DESIGN.md: Estimator)."""
from lopt.outer.base import Estimator
from lopt.outer.tbptt import TBPTT
from lopt.outer.train import TrainResult, TrainState, default_meta_optimizer, train
from lopt.outer.unroll import (InnerState, init_inner, init_inner_batch, inner_step,
                               reset_finished, truncated_unroll)

ESTIMATORS = {
    "tbptt": (TBPTT, "truncated backprop through time; optional dropped second derivatives"),
}

__all__ = ["Estimator", "TBPTT", "TrainResult", "TrainState", "default_meta_optimizer", "train",
           "InnerState", "init_inner", "init_inner_batch", "inner_step", "reset_finished",
           "truncated_unroll",
           "ESTIMATORS"]
