"""Convolutional classifiers: conv + pooling with a global-average head, and conv + FC;
optional batch norm whose running statistics are carried as task state."""
from __future__ import annotations

from typing import Optional, Sequence

import flax.linen as nn

from lopt.tasks import datasets
from lopt.tasks.base import TaskFamily
from lopt.tasks.loop_conv import Conv
from lopt.tasks.models import ACTIVATIONS, check_choice, check_widths, linen_model, softmax_xent
from lopt.tasks.supervised import supervised_family

POOLS = ("max", "avg")
HEADS = ("pool", "fc")


class ConvNet(nn.Module):
    """3×3 (``kernel``) convolutions, each followed by batch norm (optional), the activation
    and 2×2 pooling while the image is larger than 2×2; then a global-average head or FC
    layers on the flattened features."""

    channels: Sequence[int]
    num_classes: int
    activation: str = "relu"
    kernel: int = 3
    pool: str = "max"
    head: str = "pool"
    fc: Sequence[int] = ()
    batch_norm: bool = False

    @nn.compact
    def __call__(self, x, train):
        act = ACTIVATIONS[self.activation]
        pool = nn.max_pool if self.pool == "max" else nn.avg_pool
        for c in self.channels:
            x = Conv(c, (self.kernel, self.kernel), use_bias=not self.batch_norm)(x)
            if self.batch_norm:
                x = nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=x.dtype)(x)
            x = act(x)
            if x.shape[1] > 2 and x.shape[2] > 2:
                x = pool(x, (2, 2), strides=(2, 2))
        if self.head == "pool":
            x = x.mean(axis=(1, 2))
        else:
            x = x.reshape((x.shape[0], -1))
            for width in self.fc:
                x = act(nn.Dense(width)(x))
        return nn.Dense(self.num_classes)(x)


def conv_family(dataset: str = "digits", channels: Sequence[int] = (8, 16),
                head: str = "pool", fc: Sequence[int] = (32,), activation: str = "relu",
                kernel: int = 3, pool: str = "max", batch_norm: bool = False,
                batch_size: int = 64, subset_size: Optional[int] = None,
                init_scale=(1.0, 1.0), name: Optional[str] = None) -> TaskFamily:
    """Cross-entropy of a ConvNet on an image dataset (inputs H×W×C)."""
    check_choice("activation", activation, ACTIVATIONS)
    check_choice("pool", pool, POOLS)
    check_choice("head", head, HEADS)
    channels = check_widths("channels", channels, high=256)
    fc = check_widths("fc", fc) if head == "fc" else ()
    if kernel not in (1, 3, 5):
        raise ValueError(f"kernel must be one of 1, 3, 5; got {kernel!r}")
    data = datasets.load(dataset)
    if data.kind != "classification" or len(data.input_shape) != 3:
        raise ValueError(f"dataset must be an image classification dataset (H x W x C); "
                         f"{dataset!r} has inputs {data.input_shape}")
    module = ConvNet(channels=channels, num_classes=data.num_classes, activation=activation,
                     kernel=kernel, pool=pool, head=head, fc=fc, batch_norm=batch_norm)
    model = linen_model(module, softmax_xent, stateful=batch_norm)
    name = name or (f"{dataset}_conv_{head}_" + "x".join(map(str, channels))
                    + ("_bn" if batch_norm else ""))
    return supervised_family(name, data, model, batch_size=batch_size, subset_size=subset_size,
                             init_scale=init_scale)


class Conv1DNet(nn.Module):
    """1-D convolutions (width ``kernel``, stride 2) with the activation, a global-average
    head: the MNIST-1D paper's small CNN shape, for 1-D signals of shape (length,)."""

    channels: Sequence[int]
    num_classes: int
    activation: str = "relu"
    kernel: int = 5

    @nn.compact
    def __call__(self, x, train):
        act = ACTIVATIONS[self.activation]
        x = x[..., None]
        for c in self.channels:
            x = act(Conv(c, (self.kernel,), strides=(2,))(x))
        return nn.Dense(self.num_classes)(x.mean(axis=1))


def conv1d_family(dataset: str = "mnist1d", channels: Sequence[int] = (16, 16, 16),
                  activation: str = "relu", kernel: int = 5, batch_size: int = 64,
                  name: Optional[str] = None) -> TaskFamily:
    """Cross-entropy of a 1-D ConvNet on a signal classification dataset (inputs of shape
    (length,), e.g. MNIST-1D)."""
    check_choice("activation", activation, ACTIVATIONS)
    channels = check_widths("channels", channels, high=256)
    data = datasets.load(dataset)
    if data.kind != "classification" or len(data.input_shape) != 1:
        raise ValueError(f"dataset must be a 1-D signal classification dataset (inputs of "
                         f"shape (length,)); {dataset!r} has inputs {data.input_shape}")
    module = Conv1DNet(channels=channels, num_classes=data.num_classes, activation=activation,
                       kernel=kernel)
    name = name or f"{dataset}_conv1d_" + "x".join(map(str, channels))
    return supervised_family(name, data, linen_model(module, softmax_xent),
                             batch_size=batch_size)
