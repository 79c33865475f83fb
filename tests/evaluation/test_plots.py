"""Plot titles fit their figures: a comparison title as long as ``lopt train`` writes is
wrapped, never clipped at the figure's edges."""
import matplotlib
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from lopt.evaluation import plots

LONG = ("celo2_graft (learned) against tuned sgd, nesterov, rmsprop and adam on "
        "mixture:digits_mlp+iris_logistic+mnist1d_conv, 16 evaluation instances of 300 steps")


@pytest.mark.parametrize("draw", ["curves", "history", "spread"])
def test_a_long_title_is_wrapped_inside_the_figure(tmp_path, draw, monkeypatch):
    seen = {}
    original = matplotlib.figure.Figure.savefig

    def check(fig, path, **kwargs):
        canvas = FigureCanvasAgg(fig)
        canvas.draw()
        renderer = canvas.get_renderer()
        titles = [ax.title for ax in fig.axes if ax.title.get_text()]
        box = fig.bbox
        for t in titles:
            extent = t.get_window_extent(renderer)
            assert box.x0 <= extent.x0 and extent.x1 <= box.x1, (extent, box)
            seen["lines"] = t.get_text().count("\n") + 1
        original(fig, path, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", check)
    curve = list(np.linspace(1.0, 0.1, 20))
    summaries = [{"name": "adam", "learning_rate": 1e-3, "mean_curve": curve, "diverged": 0,
                  "final_mean": 0.1, "curves": [curve, curve]}]
    path = str(tmp_path / "p.png")
    if draw == "curves":
        plots.plot_curves(summaries, path, LONG)
    elif draw == "history":
        plots.plot_history([{"step": i, "meta_loss": 1.0 / (i + 1)} for i in range(10)], path,
                           LONG)
    else:
        plots.curves_with_spread(summaries, path, LONG)
    assert seen["lines"] >= 2


def test_a_short_title_stays_one_line():
    fig = matplotlib.figure.Figure(figsize=(6.4, 4.2))
    assert plots.fitted("meta-loss", fig) == "meta-loss"
