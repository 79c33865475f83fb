"""Datasets as device arrays. The offline default is scikit-learn's real 8×8 handwritten digits."""
from __future__ import annotations

import dataclasses
import functools

import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class ArrayDataset:
    """A classification dataset held on the device: train and held-out splits."""

    name: str
    train_x: jnp.ndarray
    train_y: jnp.ndarray
    test_x: jnp.ndarray
    test_y: jnp.ndarray
    num_classes: int

    @property
    def input_shape(self):
        return tuple(self.train_x.shape[1:])


OFFLINE_DATASETS = ("digits",)


@functools.lru_cache(maxsize=None)
def digits(test_fraction: float = 0.2, seed: int = 0) -> ArrayDataset:
    """scikit-learn's 1797 handwritten digits (8×8, 10 classes), pixels scaled to [0, 1].

    The split is a fixed permutation drawn from ``seed``, so train and held-out never overlap
    and every run sees the same split.
    """
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int32)
    order = np.random.default_rng(seed).permutation(len(x))
    num_test = int(round(test_fraction * len(x)))
    test_idx, train_idx = order[:num_test], order[num_test:]
    return ArrayDataset(
        name="digits",
        train_x=jnp.asarray(x[train_idx]),
        train_y=jnp.asarray(y[train_idx]),
        test_x=jnp.asarray(x[test_idx]),
        test_y=jnp.asarray(y[test_idx]),
        num_classes=10,
    )


def load(name: str) -> ArrayDataset:
    """Load a dataset by name; unknown names get an error listing what can be had offline."""
    if name == "digits":
        return digits()
    raise ValueError(
        f"dataset must be one of {list(OFFLINE_DATASETS)} (available offline), got {name!r}"
    )
