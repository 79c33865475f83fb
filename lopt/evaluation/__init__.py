"""Evaluation (DESIGN.md: Evaluation protocol): inner-training curves on evaluation instances,
tuning baselines on tuning instances, metrics (one speedup, one state size), the normalization
reference, IQM statistics (``lopt.evaluation.stats``), tables and plots
(``lopt.evaluation.tables``, ``lopt.evaluation.plots``)."""
from lopt.evaluation.curves import (
                                    Result,
                                    diverged,
                                    evaluate_rule,
                                    final_test_metrics,
                                    loss_curves,
                                    rank_key,
                                    score,
)
from lopt.evaluation.meta_validation import meta_validation
from lopt.evaluation.metrics import speedup, state_bytes_per_parameter
from lopt.evaluation.normalization import adam_reference, normalize_all
from lopt.evaluation.protocol import EVAL_SEED, LR_GRID, TUNE_SEED
from lopt.evaluation.tuning import (
                                    Instances,
                                    compare,
                                    lr_sweep,
                                    random_search,
                                    sample_log_uniform,
                                    tune_learning_rate,
)

DEFAULT_LR_GRID = LR_GRID  # lopt 0.1's name; removed in lopt 0.4

__all__ = ["loss_curves", "diverged", "score", "rank_key", "Result", "evaluate_rule",
           "final_test_metrics", "meta_validation", "Instances", "lr_sweep", "tune_learning_rate",
           "compare",
           "random_search",
           "sample_log_uniform", "speedup", "state_bytes_per_parameter", "adam_reference",
           "normalize_all", "EVAL_SEED", "TUNE_SEED", "LR_GRID", "DEFAULT_LR_GRID"]
