"""Procedurally generated datasets: seeded, so every machine builds the same arrays."""
from __future__ import annotations

import gzip
import importlib.resources

import numpy as np

from lopt.tasks.datasets.base import Dataset, from_arrays, split_indices, with_splits

SHAPES = ("square", "disk", "triangle", "cross")
SHAPE_SIZES = (8, 16)


def shapes(size: int = 8, num_samples: int = 3000, seed: int = 0) -> Dataset:
    """Noisy size×size images of four shapes (square outline, disk, triangle, cross) at random
    positions, sizes and intensities; the class is the shape."""
    if size not in SHAPE_SIZES:
        raise ValueError(f"size must be one of {', '.join(map(str, SHAPE_SIZES))}; got {size!r}")
    rng = np.random.default_rng(seed)
    n = int(num_samples)
    labels = rng.integers(0, len(SHAPES), n)
    radius = rng.uniform(0.2, 0.4, n)[:, None, None] * size
    cy, cx = [rng.uniform(0.35, 0.65, n)[:, None, None] * size for _ in range(2)]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    dy, dx = yy[None] - cy, xx[None] - cx
    cheb = np.maximum(np.abs(dy), np.abs(dx))
    masks = np.stack([
        (cheb <= radius) & (cheb >= radius - max(1.0, size / 8)),
        dy**2 + dx**2 <= radius**2,
        (dy <= radius * 0.8) & (dy >= np.abs(dx) * 1.6 - radius),
        ((np.abs(dy) <= size / 12 + 0.5) | (np.abs(dx) <= size / 12 + 0.5)) & (cheb <= radius),
    ])
    images = masks[labels, np.arange(n)].astype(np.float32)
    images *= rng.uniform(0.5, 1.0, n)[:, None, None]
    images += 0.1 * rng.standard_normal(images.shape).astype(np.float32)
    return from_arrays(f"shapes_{size}", "classification", images[..., None], labels,
                       num_classes=len(SHAPES), seed=seed, normalize="none",
                       normalization="intensities in [0.5, 1] plus N(0, 0.1²) pixel noise")


def gaussian_clusters(num_classes: int = 5, dim: int = 16, num_samples: int = 3000,
                      separation: float = 1.0, seed: int = 0) -> Dataset:
    """Points N(μ_c, I) around class means μ_c ~ N(0, separation² I / dim·16) in ``dim``
    dimensions: a classification problem whose difficulty ``separation`` sets."""
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((num_classes, dim)) * separation * 4.0 / np.sqrt(dim)
    labels = rng.integers(0, num_classes, num_samples)
    x = means[labels] + rng.standard_normal((num_samples, dim))
    return from_arrays("gaussian_clusters", "classification", x, labels,
                       num_classes=num_classes, seed=seed)


def sines(length: int = 10, noise: float = 0.1, num_samples: int = 6000, seed: int = 0) -> Dataset:
    """Sequence prediction (the LSTM task of RNNprop and HyperAdam, Wang, Sun & Xu 2019): from
    x_t = A sin(ωt + φ) + ε_t for t = 0..length−1, predict the clean f(length); A ~ U(0, 10),
    ω ~ U(0, π/2), φ ~ U(0, 2π), ε ~ N(0, noise²)."""
    rng = np.random.default_rng(seed)
    n = int(num_samples)
    amp = rng.uniform(0, 10, (n, 1))
    omega = rng.uniform(0, np.pi / 2, (n, 1))
    phase = rng.uniform(0, 2 * np.pi, (n, 1))
    t = np.arange(length + 1)[None]
    clean = amp * np.sin(omega * t + phase)
    x = clean[:, :length] + noise * rng.standard_normal((n, length))
    return from_arrays(f"sines_{length}_{noise:g}", "regression", x[..., None], clean[:, length],
                       num_classes=0, seed=seed, normalize="none",
                       normalization="raw values (amplitudes up to 10)")


def pysource(seq_len: int = 32, seed: int = 0) -> Dataset:
    """Character-level text: the source of ten CPython 3.11 standard-library modules (textwrap,
    string, shlex, fractions, heapq, bisect, colorsys, calendar, difflib, statistics; PSF
    license; ASCII), shipped as a fixed snapshot, so it is identical on every Python. The text
    is cut into contiguous 80/10/10 train/valid/test parts (no window crosses a part);
    examples are windows of ``seq_len`` characters and y is x shifted by one."""
    del seed  # the split is contiguous, not random, so neighbouring windows cannot leak
    return _text_windows("pysource", seq_len)


def pydocs(seq_len: int = 32, seed: int = 0) -> Dataset:
    """Character-level English prose: 260,000 ASCII characters of the Python reference
    manual's help topics (CPython 3.11 ``pydoc_data.topics`` in sorted key order, each
    paragraph once, without ASCII tables and underlines, runs of spaces cut to 8; PSF
    license), shipped as a fixed snapshot. A second corpus beside ``pysource`` (prose, not
    code), cut and windowed the same way, so meta-training and meta-test language tasks can
    use different text."""
    del seed
    return _text_windows("pydocs", seq_len)


def _text_windows(name: str, seq_len: int) -> Dataset:
    """The shipped ``data/NAME.txt.gz`` as windows of ``seq_len`` character ids: contiguous
    80/10/10 train/valid/test parts, train windows overlapping by half."""
    ref = importlib.resources.files("lopt.tasks.datasets") / "data" / f"{name}.txt.gz"
    text = gzip.decompress(ref.read_bytes()).decode("ascii")
    vocab = "".join(sorted(set(text)))
    ids = np.frombuffer(text.encode("ascii"), np.uint8)
    table = np.zeros(256, np.int32)
    table[np.frombuffer(vocab.encode("ascii"), np.uint8)] = np.arange(len(vocab))
    ids = table[ids]
    cut1, cut2 = int(0.8 * len(ids)), int(0.9 * len(ids))

    def windows(part, stride):
        starts = np.arange(0, len(part) - seq_len - 1, stride)
        w = np.stack([part[s:s + seq_len + 1] for s in starts])
        return w[:, :-1], w[:, 1:]

    return with_splits(name, "text", windows(ids[:cut1], seq_len // 2),
                       windows(ids[cut1:cut2], seq_len), windows(ids[cut2:], seq_len),
                       num_classes=len(vocab), normalize="none",
                       normalization="character ids", vocab=vocab)


def friedman(num_samples: int = 2000, noise: float = 1.0, seed: int = 0) -> Dataset:
    """Friedman's regression problem #1 (Friedman 1991; scikit-learn's ``make_friedman1``):
    y = 10 sin(π x₁x₂) + 20 (x₃ − ½)² + 10 x₄ + 5 x₅ + N(0, noise²) on x ~ U(0, 1)¹⁰ (five
    features are irrelevant), seeded; features and targets standardized on the train split."""
    from sklearn.datasets import make_friedman1

    x, y = make_friedman1(int(num_samples), noise=float(noise), random_state=int(seed))
    tr, va, te = split_indices(len(x), seed)
    mean, std = y[tr].mean(), y[tr].std()
    y = ((y - mean) / std).astype(np.float32)
    return with_splits("friedman", "regression", (x[tr], y[tr]), (x[va], y[va]), (x[te], y[te]),
                       num_classes=0, normalization="per-feature standardized with train mean "
                       "and std; targets standardized with train mean and std")
