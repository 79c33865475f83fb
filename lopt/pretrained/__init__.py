"""Learned optimizers shipped with lopt, each made by a committed `lopt train` command."""
from __future__ import annotations

import os

_HERE = os.path.dirname(os.path.abspath(__file__))

PRETRAINED = {
    "l2l_lstm_quadratic": ("l2l_lstm_quadratic.lopt",
                           "L2L LSTM meta-trained by `lopt train` (defaults) on 10x10 quadratics; "
                           "see benchmarks/l2l_quadratic/"),
}


def path(name: str) -> str:
    """The file of the pretrained optimizer ``name``."""
    if name not in PRETRAINED:
        raise ValueError(f"pretrained name must be one of {sorted(PRETRAINED)} (or a path to a "
                         f"file written by lopt.save); got {name!r}")
    return os.path.join(_HERE, PRETRAINED[name][0])
