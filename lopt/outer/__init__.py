"""Outer (meta-) training: unrolls, estimators and the training loop (DESIGN.md: Estimator)."""
from lopt.outer.base import Estimator
from lopt.outer.es import ES, PES
from lopt.outer.mixture import build_estimator
from lopt.outer.reparam import Mixed, Reparam
from lopt.outer.tbptt import TBPTT
from lopt.outer.train import (
                              RunFiles,
                              RunOptions,
                              TrainResult,
                              TrainState,
                              default_meta_optimizer,
                              initial_theta,
                              train,
)
from lopt.outer.unroll import (
                              Horizon,
                              InnerState,
                              StepOutput,
                              UnrollOptions,
                              broadcast_runs,
                              init_inner,
                              init_inner_batch,
                              inner_step,
                              reset_finished,
                              truncated_unroll,
)

ESTIMATORS = {
    "tbptt": (TBPTT, "truncated backprop through time; optional dropped second derivatives"),
    "es": (ES, "antithetic evolution strategies, on truncations or full horizons"),
    "pes": (PES, "persistent evolution strategies: unbiased across truncations"),
    "reparam": (Reparam, "reparameterization gradient of the Gaussian-smoothed meta-loss"),
    "mixed": (Mixed, "inverse-variance mix of ES and reparameterization gradients "
                     "(cross-fitted weights)"),
}

__all__ = ["Estimator", "UnrollOptions", "RunOptions", "RunFiles", "TBPTT", "ES", "PES", "Reparam",
           "Mixed", "TrainResult", "TrainState", "default_meta_optimizer", "initial_theta", "train",
           "Horizon",
           "InnerState", "StepOutput", "broadcast_runs", "init_inner", "init_inner_batch",
           "inner_step", "reset_finished", "truncated_unroll", "ESTIMATORS", "build_estimator"]
