"""The pretrained meta-test suite's own arithmetic: speedups and the globally tuned lr."""
import numpy as np

from lopt.bench.pretrained import GRID, REFERENCE_REACH, global_lr_index, task_speedup


def _summary(curve, diverged=0, long_curve=None, long_diverged=0):
    return {"mean_curve": curve, "diverged": diverged, "long_curve": long_curve,
            "long_diverged": long_diverged}


def test_speedup_counts_the_steps_the_reference_needs_to_reach_the_learned_final_loss():
    learned = _summary([1.0, 0.5, 0.3, 0.2, 0.1])  # T = 4, final 0.1
    adam = _summary(None, long_curve=[1.0, 0.9, 0.6, 0.4, 0.3, 0.2, 0.1, 0.05, 0.0])
    assert task_speedup(learned, adam) == {"value": 6 / 4, "bound": False, "note": ""}
    slow = _summary(None, long_curve=[1.0] * 9)
    assert task_speedup(learned, slow) == {"value": REFERENCE_REACH, "bound": True, "note": ""}
    fast = _summary(None, long_curve=[1.0, 0.1] + [0.0] * 7)
    assert task_speedup(learned, fast)["value"] == 1 / 4
    # a diverged learned rule earns nothing; a diverged reference is a bound, flagged
    assert task_speedup(_summary(None, diverged=2), adam)["value"] == 0.0
    gone = _summary(None, long_curve=None, long_diverged=16)
    assert task_speedup(learned, gone) == {"value": REFERENCE_REACH, "bound": True,
                                           "note": "reference diverged"}


def test_global_lr_ranks_divergences_first_then_the_mean_over_tasks():
    # three lrs on two tasks: (diverged runs, mean final loss)
    task_a = [[0, 0.5], [0, 0.1], [1, 0.0]]
    task_b = [[0, 0.4], [0, 0.6], [0, 0.0]]
    assert global_lr_index([task_a, task_b]) == 1  # lr 2 diverged somewhere; 0.35 < 0.45
    assert global_lr_index([task_b]) == 2
    assert len(GRID) == 14 and np.isclose(GRID[0], 1e-4) and np.isclose(GRID[-1], 1.0)
