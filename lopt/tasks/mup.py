"""μP models and their task families: width is the axis a μP-scaled rule transfers along.

Maximal-update parameterization (Yang et al. 2022, "Tensor Programs V", Table 3 and Table 8):
hidden kernels start N(0, 1/fan-in) and step 1/fan-in as far as width is concerned; embeddings,
norms and biases are vector-like (width-independent init and step); the readout starts at zero
and its output is divided by the width. μLO (Thérien et al. 2026) multiplies a learned
optimizer's step of each tensor by that tensor's multiplier; each family's tasks carry their
model's multipliers as ``Task.step_multipliers`` (``lopt.mup.mup_rule`` applies them).

``base_width`` is μP's base shape: the 1/width factors are base / width, so at the base width
the model's readout and the steps are those of standard parameterization. ``base_width=1`` is
μLO's own convention (1/fan-in steps, output / width); the registered μP tasks use 64
(``BASE_WIDTH``). A rule transfers across widths within one base.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from lopt.tasks import datasets
from lopt.tasks.base import TaskFamily
from lopt.tasks.models import (
    ACTIVATIONS,
    check_choice,
    check_widths,
    linen_model,
    softmax_xent,
    token_xent,
)
from lopt.tasks.supervised import supervised_family

MAX_DEPTH = 10
MAX_WIDTH = 8192
BASE_WIDTH = 64
_HIDDEN = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")
_UNIT = nn.initializers.normal(1.0)


class MuMLP(nn.Module):
    """An MLP in μP (Tensor Programs V, Table 8, as μLO's ``MuMLP``): every kernel but the
    readout N(0, 1/fan-in) truncated, the readout zero, biases N(0, 1), and the output
    multiplied by base_width/(last hidden width). Its step multipliers are
    ``mup_multipliers``."""

    hidden: Sequence[int]
    out: int
    activation: str = "relu"
    base_width: int = 1

    @nn.compact
    def __call__(self, x, train):
        del train
        x = x.reshape((x.shape[0], -1))
        act = ACTIVATIONS[self.activation]
        for width in self.hidden:
            x = act(nn.Dense(width, kernel_init=_HIDDEN, bias_init=_UNIT)(x))
        out = nn.Dense(self.out, kernel_init=nn.initializers.zeros, bias_init=_UNIT)(x)
        return out * (self.base_width / self.hidden[-1])


def mup_multipliers(params, base_width: int = 1) -> dict:
    """μLO's per-tensor step multipliers for ``MuMLP`` parameters (``Dense_0`` … ``Dense_L``):
    base_width/fan-in for the kernels of ``Dense_1`` … ``Dense_{L-1}`` (hidden to hidden), 1 for
    the input and readout layers and every bias."""
    last = len(params) - 1

    def layer(name, leaves):
        index = int(name.rsplit("_", 1)[1])
        hidden = 0 < index < last
        return {k: (base_width / v.shape[0] if hidden and k == "kernel" else 1.0)
                for k, v in leaves.items()}

    return {name: layer(name, leaves) for name, leaves in params.items()}


# The kernels of MuTransformerLM whose two axes both grow with the width.
TRANSFORMER_HIDDEN = ("query", "key", "value", "attention_out", "mlp_in", "mlp_out")


class MuTransformerLM(nn.Module):
    """A pre-norm causal transformer in μP (Tensor Programs V, Table 3): token and position
    embeddings N(0, 1); per block, query (zero-initialized, as Tensor Programs V advises), key,
    value and output projections and a GELU MLP (4× width) with N(0, 1/fan-in) kernels;
    attention logits q·k · √(base d_head) / d_head (μP's 1/d, equal to 1/√d at the base
    width); a final LayerNorm and a zero readout whose logits are multiplied by base_width /
    width. Step multipliers: ``mup_transformer_multipliers``."""

    vocab: int
    d_model: int = 64
    heads: int = 2
    layers: int = 1
    max_len: int = 256
    base_width: int = 1

    @nn.compact
    def __call__(self, x, train):
        del train
        b, t = x.shape
        d, heads = self.d_model, self.heads
        h = nn.Embed(self.vocab, d, embedding_init=_UNIT, name="token_embed")(x)
        h = h + nn.Embed(self.max_len, d, embedding_init=_UNIT,
                         name="position_embed")(jnp.arange(t))[None]
        causal = jnp.tril(jnp.ones((t, t), bool))

        def split(z):
            return z.reshape(b, t, heads, d // heads)

        for i in range(self.layers):
            y = nn.LayerNorm(name=f"attention_norm_{i}")(h)
            q = split(nn.Dense(d, kernel_init=nn.initializers.zeros, name=f"query_{i}")(y))
            k = split(nn.Dense(d, kernel_init=_HIDDEN, name=f"key_{i}")(y))
            v = split(nn.Dense(d, kernel_init=_HIDDEN, name=f"value_{i}")(y))
            head = d // heads
            logits = jnp.einsum("bqhc,bkhc->bhqk", q, k) * (
                jnp.sqrt(max(self.base_width // heads, 1)) / head)
            weights = jax.nn.softmax(jnp.where(causal, logits, -1e30), axis=-1)
            a = jnp.einsum("bhqk,bkhc->bqhc", weights, v).reshape(b, t, d)
            h = h + nn.Dense(d, kernel_init=_HIDDEN, name=f"attention_out_{i}")(a)
            m = nn.Dense(4 * d, kernel_init=_HIDDEN, name=f"mlp_in_{i}")(
                nn.LayerNorm(name=f"mlp_norm_{i}")(h))
            h = h + nn.Dense(d, kernel_init=_HIDDEN, name=f"mlp_out_{i}")(nn.gelu(m))
        h = nn.LayerNorm(name="final_norm")(h)
        readout = nn.Dense(self.vocab, kernel_init=nn.initializers.zeros, name="readout")
        return readout(h) * (self.base_width / d)


def mup_transformer_multipliers(params, base_width: int = 1) -> dict:
    """``MuTransformerLM``'s step multipliers: base_width/fan-in for the query, key, value,
    attention output and MLP kernels; 1 for the embeddings, norms, biases and the readout."""
    def layer(name, leaves):
        hidden = name.rsplit("_", 1)[0] in TRANSFORMER_HIDDEN
        return {k: (base_width / v.shape[0] if hidden and k == "kernel" else 1.0)
                for k, v in leaves.items()}

    return {name: layer(name, leaves) for name, leaves in params.items()}


@dataclasses.dataclass(frozen=True)
class StepMultipliers:
    """A μP model's multipliers as a value (``model`` "mlp" or "transformer", ``base_width``):
    two families share a parameterization exactly when theirs compare equal."""

    model: str
    base_width: int = 1

    def __call__(self, params) -> dict:
        fn = {"mlp": mup_multipliers, "transformer": mup_transformer_multipliers}[self.model]
        return fn(params, self.base_width)


def with_step_multipliers(family: TaskFamily, multipliers: Callable) -> TaskFamily:
    """``family`` whose tasks carry ``multipliers`` as their ``step_multipliers``."""
    def build(cfg):
        return dataclasses.replace(family.build(cfg), step_multipliers=multipliers)

    return dataclasses.replace(family, build=build)


def _classification(dataset):
    data = datasets.load(dataset)
    if data.kind != "classification":
        raise ValueError(f"dataset must be a classification dataset for an MLP classifier; "
                         f"{dataset!r} is {data.kind}")
    return data


def mup_mlp_family(dataset: str = "mnist_5k_14", width: int = 64, depth: int = 2,
                   activation: str = "relu", batch_size: int = 128, base_width: int = BASE_WIDTH,
                   subset_size: Optional[int] = None, name: Optional[str] = None) -> TaskFamily:
    """Cross-entropy of a μP MLP (``MuMLP``: ``depth`` hidden layers of ``width``, μP base
    ``base_width``) on a classification dataset: μLO's task, whose width is the transfer
    axis. With ``subset_size`` each instance trains on its own random subset of the train
    split (instances never rescale the init: that would undo μP)."""
    check_choice("activation", activation, ACTIVATIONS)
    hidden = check_widths("width", (width,) * int(depth), high=MAX_WIDTH)
    if not 2 <= len(hidden) <= MAX_DEPTH:
        raise ValueError(f"depth must be between 2 and {MAX_DEPTH} (μP needs a hidden-to-hidden "
                         f"layer); got {depth}")
    data = _classification(dataset)
    base_width = _base(base_width)
    model = linen_model(MuMLP(hidden=hidden, out=data.num_classes, activation=activation,
                              base_width=base_width), softmax_xent)
    name = name or f"{dataset}_mup{base_width}_mlp_{depth}x{width}_{activation}"
    family = supervised_family(name, data, model, batch_size=batch_size, subset_size=subset_size)
    return with_step_multipliers(family, StepMultipliers("mlp", base_width))


def mup_transformer_family(width: int = 64, layers: int = 1, heads: int = 2,
                           seq_len: int = 32, batch_size: int = 32,
                           base_width: int = BASE_WIDTH, subset_size: Optional[int] = None,
                           name: Optional[str] = None) -> TaskFamily:
    """Next-character cross-entropy of a μP causal transformer (``MuTransformerLM``, model
    width ``width``) on ``pysource``: the transformer family with width as the transfer axis;
    ``subset_size`` as for ``mup_mlp_family``."""
    check_widths("width", (width,), low=8, high=MAX_WIDTH)
    if not 1 <= int(layers) <= 4:
        raise ValueError(f"layers must be between 1 and 4; got {layers!r}")
    if isinstance(heads, bool) or not isinstance(heads, int) or heads < 1 or width % heads:
        raise ValueError(f"heads must be a positive integer dividing width ({width}); "
                         f"got {heads!r}")
    data = datasets.load("pysource", seq_len=seq_len)
    base_width = _base(base_width)
    model = linen_model(MuTransformerLM(vocab=data.num_classes, d_model=int(width), heads=heads,
                                        layers=int(layers), base_width=base_width), token_xent)
    name = name or f"mup{base_width}_transformer_{layers}x{width}_h{heads}_t{seq_len}"
    family = supervised_family(name, data, model, batch_size=batch_size, subset_size=subset_size)
    return with_step_multipliers(family, StepMultipliers("transformer", base_width))


def _base(base_width) -> int:
    if isinstance(base_width, bool) or not isinstance(base_width, int) or \
            not 1 <= base_width <= MAX_WIDTH:
        raise ValueError(f"base_width must be an integer between 1 and {MAX_WIDTH}; "
                         f"got {base_width!r}")
    return base_width
