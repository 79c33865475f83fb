"""Bigger image models than anything in meta-training: a residual conv net with group norm
(He et al. 2016; Wu & He 2018), a small Vision Transformer (Dosovitskiy et al. 2021) and an
MLP-Mixer (Tolstikhin et al. 2021). The 4-layer transformer LM is
``lopt.tasks.sequence.transformer_lm_family(layers=4)``."""
from __future__ import annotations

import dataclasses
from typing import Sequence

import flax.linen as nn

from lopt.tasks import datasets
from lopt.tasks.base import TaskFamily
from lopt.tasks.loop_conv import Conv
from lopt.tasks.models import check_widths, linen_model, softmax_xent
from lopt.tasks.supervised import supervised_family


class ResidualBlock(nn.Module):
    """x + conv(relu(norm(conv(relu(norm(x)))))) — a pre-activation block; a strided 1×1
    projection on the skip path when the width or resolution changes."""

    width: int
    stride: int = 1
    groups: int = 4

    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.GroupNorm(num_groups=min(self.groups, x.shape[-1]), dtype=x.dtype)(x))
        skip = x
        if self.stride != 1 or x.shape[-1] != self.width:
            skip = Conv(self.width, (1, 1), strides=self.stride, use_bias=False)(h)
        h = Conv(self.width, (3, 3), strides=self.stride, use_bias=False)(h)
        h = nn.relu(nn.GroupNorm(num_groups=min(self.groups, self.width), dtype=h.dtype)(h))
        h = Conv(self.width, (3, 3), use_bias=False)(h)
        return skip + h


class ResNet(nn.Module):
    """A 3×3 stem, stages of residual blocks (the first block of every later stage halves the
    resolution), group norm, global average pooling, a linear head."""

    widths: Sequence[int]
    blocks: int
    num_classes: int

    @nn.compact
    def __call__(self, x, train):
        del train
        h = Conv(self.widths[0], (3, 3), use_bias=False)(x)
        for stage, width in enumerate(self.widths):
            for b in range(self.blocks):
                h = ResidualBlock(width, stride=2 if stage > 0 and b == 0 else 1)(h)
        h = nn.relu(nn.GroupNorm(num_groups=min(4, h.shape[-1]), dtype=h.dtype)(h))
        return nn.Dense(self.num_classes)(h.mean(axis=(1, 2)))


def _patches(x, patch: int):
    n, h, w, c = x.shape
    x = x.reshape(n, h // patch, patch, w // patch, patch, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, (h // patch) * (w // patch), patch * patch * c)


class ViT(nn.Module):
    """Non-overlapping patches embedded linearly plus learned positions, pre-norm encoder
    blocks (multi-head self-attention, a GELU MLP of 4× width), mean pooling, a linear head."""

    patch: int
    width: int
    depth: int
    heads: int
    num_classes: int

    @nn.compact
    def __call__(self, x, train):
        del train
        h = nn.Dense(self.width)(_patches(x, self.patch))
        h = h + self.param("positions", nn.initializers.normal(0.02),
                           (1,) + h.shape[1:]).astype(h.dtype)
        for _ in range(self.depth):
            a = nn.LayerNorm(dtype=h.dtype)(h)
            h = h + nn.MultiHeadDotProductAttention(num_heads=self.heads, dtype=h.dtype)(a, a)
            m = nn.gelu(nn.Dense(4 * self.width)(nn.LayerNorm(dtype=h.dtype)(h)))
            h = h + nn.Dense(self.width)(m)
        return nn.Dense(self.num_classes)(nn.LayerNorm(dtype=h.dtype)(h).mean(axis=1))


class Mixer(nn.Module):
    """MLP-Mixer: patches embedded linearly, then blocks of a token-mixing MLP (across
    patches) and a channel-mixing MLP (across features), each pre-norm and residual."""

    patch: int
    width: int
    depth: int
    token_hidden: int
    channel_hidden: int
    num_classes: int

    @nn.compact
    def __call__(self, x, train):
        del train
        h = nn.Dense(self.width)(_patches(x, self.patch))
        tokens = h.shape[1]
        for _ in range(self.depth):
            t = nn.LayerNorm(dtype=h.dtype)(h).transpose(0, 2, 1)
            t = nn.Dense(tokens)(nn.gelu(nn.Dense(self.token_hidden)(t)))
            h = h + t.transpose(0, 2, 1)
            c = nn.LayerNorm(dtype=h.dtype)(h)
            h = h + nn.Dense(self.width)(nn.gelu(nn.Dense(self.channel_hidden)(c)))
        return nn.Dense(self.num_classes)(nn.LayerNorm(dtype=h.dtype)(h).mean(axis=1))


def _image(dataset: str):
    data = datasets.load(dataset)
    if data.kind != "classification" or data.train_x.ndim != 4:
        raise ValueError(f"dataset must be an image classification set (N, H, W, C); "
                         f"{dataset!r} is not")
    return data


def _patched_images(dataset: str, patch: int):
    data = _image(dataset)
    h, w = data.train_x.shape[1:3]
    _check("patch", patch, 1, min(h, w))
    if h % patch or w % patch:
        raise ValueError(f"patch must divide the {h}x{w} images of {dataset}; got {patch}")
    return data


def _check(field: str, value: int, low: int, high: int) -> int:
    if not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{field} must be an integer between {low} and {high}; got {value!r}")
    return value


def resnet_family(dataset: str = "mnist_5k", widths: Sequence[int] = (16, 32, 64),
                  blocks: int = 2, batch_size: int = 64, name=None) -> TaskFamily:
    """A pre-activation ResNet with group norm (``blocks`` residual blocks per stage) on an
    image dataset."""
    widths = check_widths("widths", widths, 4, 512)
    _check("blocks", blocks, 1, 8)
    data = _image(dataset)
    model = linen_model(ResNet(widths=widths, blocks=blocks, num_classes=data.num_classes),
                        softmax_xent)
    name = name or f"{dataset}_resnet_" + "x".join(map(str, widths)) + f"_b{blocks}"
    return dataclasses.replace(supervised_family(name, data, model, batch_size=batch_size),
                               sequential_runs=True)


def vit_family(dataset: str = "mnist_5k", patch: int = 4, width: int = 64, depth: int = 4,
               heads: int = 4, batch_size: int = 64, name=None) -> TaskFamily:
    """A small Vision Transformer on an image dataset (``patch`` must divide the image)."""
    data = _patched_images(dataset, patch)
    _check("width", width, 8, 1024)
    _check("depth", depth, 1, 24)
    if width % heads:
        raise ValueError(f"heads must divide width ({width}); got {heads!r}")
    model = linen_model(ViT(patch=patch, width=width, depth=depth, heads=heads,
                            num_classes=data.num_classes), softmax_xent)
    name = name or f"{dataset}_vit_p{patch}_w{width}_d{depth}_h{heads}"
    return supervised_family(name, data, model, batch_size=batch_size)


def mixer_family(dataset: str = "mnist_5k", patch: int = 4, width: int = 64, depth: int = 4,
                 token_hidden: int = 64, channel_hidden: int = 128, batch_size: int = 64,
                 name=None) -> TaskFamily:
    """An MLP-Mixer on an image dataset (``patch`` must divide the image)."""
    data = _patched_images(dataset, patch)
    for field, v, hi in (("width", width, 1024), ("depth", depth, 24),
                         ("token_hidden", token_hidden, 4096),
                         ("channel_hidden", channel_hidden, 4096)):
        _check(field, v, 1, hi)
    model = linen_model(Mixer(patch=patch, width=width, depth=depth, token_hidden=token_hidden,
                              channel_hidden=channel_hidden, num_classes=data.num_classes),
                        softmax_xent)
    name = name or f"{dataset}_mixer_p{patch}_w{width}_d{depth}"
    return supervised_family(name, data, model, batch_size=batch_size)

