"""The suites' markdown tables: the best mean without divergence is bold, diverged runs are
shown, and the transposed table holds the same cells."""
from lopt.evaluation import tables


def summary(name, mean, diverged=0):
    return {"name": name, "final_mean": mean, "final_sem": 0.01, "diverged": diverged,
            "num_tasks": 4, "auc_mean": None if mean is None else 2 * mean}


ROWS = {"a": [summary("x", 0.5), summary("y", 0.1, diverged=1), summary("z", 0.3)],
        "b": [summary("x", 0.2), summary("z", 0.4)]}


def cells(table):
    return [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()[2:]]


def test_best_without_divergence_is_bold_and_divergence_is_counted():
    rows = cells(tables.matrix_table(ROWS, ["x", "y", "z"]))
    assert rows[0][0] == "a" and rows[0][3].startswith("**0.3")  # y's 0.1 diverged
    assert "(1/4 diverged)" in rows[0][2] and "**" not in rows[0][2]
    assert rows[1][1].startswith("**0.2") and rows[1][2] == "—"


def test_transpose_holds_the_same_cells():
    plain = cells(tables.matrix_table(ROWS, ["x", "y", "z"]))
    flipped = cells(tables.matrix_table(ROWS, ["x", "y", "z"], transpose=True))
    assert [r[0] for r in flipped] == ["x", "y", "z"]
    assert [[r[i + 1] for r in flipped] for i in range(2)] == [r[1:] for r in plain]
    field = cells(tables.field_table(ROWS, ["x", "z"], "auc_mean", ".2f", transpose=True))
    assert field == [["x", "1.00", "0.40"], ["z", "0.60", "0.80"]]


def test_loss_versus_width_plots_medians_and_counts_diverged_runs(tmp_path):
    import numpy as np
    from matplotlib.image import imread

    from lopt.evaluation import plots

    path = str(tmp_path / "width.png")
    series = {"a": [[1.0, 2.0, 3.0], [0.5, np.nan, 0.7]], "all diverged": [[np.nan], [np.nan]]}
    drawn = plots.final_loss_versus((32, 64), series, path, "t", "width")
    # Medians; a series with no run left is not drawn.
    assert drawn == {"a (1 diverged)": [2.0, 0.6]}
    assert imread(path).shape[0] > 100
