"""The Dataset noun: train / validation / test splits held on the device, with metadata."""
from __future__ import annotations

import dataclasses
from typing import Optional

import jax.numpy as jnp
import numpy as np

KINDS = ("classification", "regression", "text")
SPLITS = ("train", "valid", "test")


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Fixed, disjoint train / valid / test splits as device arrays.

    ``kind`` is ``classification`` (integer labels in [0, num_classes)), ``regression`` (float
    targets) or ``text`` (x and y are token windows, y is x shifted by one; num_classes is the
    vocabulary size). ``normalization`` says in words how the inputs were scaled; statistics
    always come from the train split alone.
    """

    name: str
    kind: str
    train_x: jnp.ndarray
    train_y: jnp.ndarray
    valid_x: jnp.ndarray
    valid_y: jnp.ndarray
    test_x: jnp.ndarray
    test_y: jnp.ndarray
    num_classes: int
    normalization: str = ""
    vocab: Optional[str] = None

    @property
    def input_shape(self) -> tuple:
        return tuple(self.train_x.shape[1:])

    def split(self, name: str):
        """(x, y) of the split ``name`` (train, valid or test)."""
        if name not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}; got {name!r}")
        return getattr(self, f"{name}_x"), getattr(self, f"{name}_y")

    def sizes(self) -> dict:
        return {s: int(self.split(s)[0].shape[0]) for s in SPLITS}

    def metadata(self) -> dict:
        return {"name": self.name, "kind": self.kind, "input_shape": list(self.input_shape),
                "num_classes": self.num_classes, "sizes": self.sizes(),
                "normalization": self.normalization}


def split_indices(n: int, seed: int, valid_fraction: float = 0.1, test_fraction: float = 0.2):
    """A fixed permutation of range(n) cut into disjoint (train, valid, test) index arrays."""
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(test_fraction * n))
    n_valid = int(round(valid_fraction * n))
    return order[n_test + n_valid:], order[n_test:n_test + n_valid], order[:n_test]


def from_arrays(name: str, kind: str, x, y, *, num_classes: int, seed: int = 0,
                valid_fraction: float = 0.1, test_fraction: float = 0.2,
                normalize: str = "standardize", normalization: str = "") -> Dataset:
    """Split ``x, y`` with ``split_indices`` and normalize the inputs with train statistics.

    ``normalize``: ``standardize`` (per-feature zero mean, unit variance on train), ``scale``
    (divide by the train maximum of |x|, for pixel intensities) or ``none``.
    """
    x = np.asarray(x, np.float32)
    tr, va, te = split_indices(len(x), seed, valid_fraction, test_fraction)
    return with_splits(name, kind, (x[tr], y[tr]), (x[va], y[va]), (x[te], y[te]),
                       num_classes=num_classes, normalize=normalize, normalization=normalization)


def with_splits(name, kind, train, valid, test, *, num_classes, normalize="standardize",
                normalization="", vocab=None) -> Dataset:
    """A Dataset from given (x, y) splits, inputs normalized with train statistics."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    xs = [np.asarray(s[0]) for s in (train, valid, test)]
    if normalize == "standardize":
        mean = xs[0].mean(axis=0, keepdims=True)
        std = xs[0].std(axis=0, keepdims=True)
        std = np.where(std > 1e-8, std, 1.0)
        xs = [((x - mean) / std).astype(np.float32) for x in xs]
        normalization = normalization or "per-feature standardized with train mean and std"
    elif normalize == "scale":
        top = float(np.abs(xs[0]).max()) or 1.0
        xs = [(x / top).astype(np.float32) for x in xs]
        normalization = normalization or "divided by the train maximum (inputs in [0, 1])"
    elif normalize != "none":
        raise ValueError(f"normalize must be standardize, scale or none; got {normalize!r}")
    y_dtype = np.float32 if kind == "regression" else np.int32
    ys = [np.asarray(s[1]).astype(y_dtype) for s in (train, valid, test)]
    return Dataset(name=name, kind=kind, train_x=jnp.asarray(xs[0]), train_y=jnp.asarray(ys[0]),
                   valid_x=jnp.asarray(xs[1]), valid_y=jnp.asarray(ys[1]),
                   test_x=jnp.asarray(xs[2]), test_y=jnp.asarray(ys[2]),
                   num_classes=num_classes, normalization=normalization, vocab=vocab)
