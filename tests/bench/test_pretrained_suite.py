"""The pretrained meta-test suite's own arithmetic: the globally tuned lr."""
import numpy as np

from lopt.bench.pretrained import GRID, global_lr_index


def test_global_lr_ranks_divergences_first_then_the_mean_over_tasks():
    # three lrs on two tasks: (diverged runs, mean final loss)
    task_a = [[0, 0.5], [0, 0.1], [1, 0.0]]
    task_b = [[0, 0.4], [0, 0.6], [0, 0.0]]
    assert global_lr_index([task_a, task_b]) == 1  # lr 2 diverged somewhere; 0.35 < 0.45
    assert global_lr_index([task_b]) == 2
    assert len(GRID) == 14 and np.isclose(GRID[0], 1e-4) and np.isclose(GRID[-1], 1.0)
