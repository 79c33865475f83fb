"""Image datasets read through ``tfds.data_source`` (no TensorFlow needed to read prepared data).

DESIGN.md "Data and splits": lopt never downloads at run time unless asked; an unprepared or
uninstallable dataset gets one line naming what to do and the offline alternatives.
"""
from __future__ import annotations

import numpy as np

from lopt.tasks.datasets.base import Dataset, split_indices, with_splits

TFDS_DATASETS = {
    "mnist": "MNIST handwritten digits, 28×28×1, 10 classes (tfds)",
    "fashion_mnist": "Fashion-MNIST clothing, 28×28×1, 10 classes (tfds)",
    "kmnist": "Kuzushiji-MNIST cursive Japanese, 28×28×1, 10 classes (tfds)",
    "cifar10": "CIFAR-10 natural images, 32×32×3, 10 classes (tfds)",
    "svhn_cropped": "SVHN house-number digits, 32×32×3, 10 classes (tfds)",
}
OFFLINE_ALTERNATIVES = "digits, mnist_5k, mnist_5k_14, mnist1d, shapes_16"


def _read_split(source) -> tuple:
    n = len(source)
    images, labels = [], []
    for i in range(n):
        record = source[i]
        images.append(np.asarray(record["image"]))
        labels.append(int(record["label"]))
    return np.stack(images), np.asarray(labels)


def tfds_dataset(name: str, data_dir: str | None = None, download: bool = False,
                 valid_fraction: float = 0.1, seed: int = 0) -> Dataset:
    """``name``'s train and test splits via ``tfds.data_source``; validation is a fixed seeded
    ``valid_fraction`` of train, disjoint from what remains of train. Pixels are scaled to [0, 1].

    ``download=True`` lets tfds download and prepare (array_record files; needs the network and
    TensorFlow); by default only already prepared data under ``data_dir`` is read.
    """
    if name not in TFDS_DATASETS:
        raise ValueError(f"tfds dataset must be one of {', '.join(TFDS_DATASETS)}; got {name!r}")
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise ValueError(f"dataset {name!r} needs tensorflow-datasets: pip install 'lopt[datasets]'"
                         f"; offline alternatives: {OFFLINE_ALTERNATIVES}") from None
    kwargs = {"data_dir": data_dir, "download": download}
    if download:
        kwargs["download_and_prepare_kwargs"] = {
            "download_config": tfds.download.DownloadConfig(file_format="array_record")}
    try:
        train = _read_split(tfds.data_source(name, split="train", **kwargs))
        test = _read_split(tfds.data_source(name, split="test", **kwargs))
    except Exception as err:  # tfds raises many types for "not there"; all mean the same here
        where = data_dir or "the default tfds data_dir (~/tensorflow_datasets)"
        reason = str(err).strip().splitlines()[0][:120] if str(err).strip() else type(err).__name__
        raise ValueError(f"dataset {name!r} is not prepared in array_record format under {where} "
                         f"({reason}); prepare it where there is network and TensorFlow, or use "
                         f"an offline dataset: {OFFLINE_ALTERNATIVES}") from None
    x, y = train
    tr, va, _ = split_indices(len(x), seed, valid_fraction=valid_fraction, test_fraction=0.0)
    return with_splits(name, "classification", (x[tr], y[tr]), (x[va], y[va]), test,
                       num_classes=10, normalize="scale")
