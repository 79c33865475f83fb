"""lopt bench accelerator's pieces on CPU: its pytrees hold the stated parameter count and its
update timing keeps the learned step (not only the state) in the timed program."""
import math

import jax

from lopt.bench.perf import accelerator


def test_pytrees_hold_exactly_the_parameter_count():
    for n in (1000, 65_536, 70_001):
        shapes = jax.eval_shape(lambda: accelerator._params(n))  # noqa: B023
        assert sum(math.prod(x.shape) for x in jax.tree.leaves(shapes)) == n


def test_update_row_times_the_update_and_reports_failures_as_rows():
    row = accelerator.update_row("per_parameter_mlp", 4096, 1)
    assert row["ms"] > 0 and row["params"] == 4096
    bad = accelerator.update_row("no_such_rule", 4096, 1)
    assert bad["ms"] is None and bad["error"].startswith("rule must be one of")


def test_tensor_parallel_layouts_divide_the_devices_and_split_the_runs_evenly():
    from lopt.bench.perf.tensor_parallel import layouts

    assert layouts(4, 4) == [1, 2, 4]
    assert layouts(8, 4) == [2, 4, 8]  # 8 blocks of 1 cannot split 4 runs
    assert layouts(6, 6) == [1, 2]
    assert layouts(1, 4) == [1]


def test_the_tensor_parallel_suite_on_one_device_is_one_line_and_writes_nothing(tmp_path, capsys):
    from lopt.cli import main

    out = tmp_path / "tp"
    assert main(["bench", "tensor_parallel", "--quick", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "at least 2 devices" in err[0] and not out.exists()
