"""lopt bench accelerator's pieces on CPU: its pytrees hold the stated parameter count and its
update timing keeps the learned step (not only the state) in the timed program."""
import math

import jax

from lopt.bench.perf import accelerator


def test_pytrees_hold_exactly_the_parameter_count():
    for n in (1000, 65_536, 70_001):
        shapes = jax.eval_shape(lambda: accelerator._params(n))
        assert sum(math.prod(x.shape) for x in jax.tree.leaves(shapes)) == n


def test_update_row_times_the_update_and_reports_failures_as_rows():
    row = accelerator.update_row("per_parameter_mlp", 4096, 1)
    assert row["ms"] > 0 and row["params"] == 4096
    bad = accelerator.update_row("no_such_rule", 4096, 1)
    assert bad["ms"] is None and bad["error"].startswith("rule must be one of")
