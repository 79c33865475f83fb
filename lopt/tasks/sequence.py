"""Sequence tasks: the LSTM sequence prediction of RNNprop / HyperAdam (Wang, Sun & Xu 2019, Table
2), a character-level RNN language model and a tiny causal transformer language model."""
from __future__ import annotations

import functools
from typing import Optional

import flax.linen as nn
import jax.numpy as jnp

from lopt.tasks import datasets
from lopt.tasks.base import TaskFamily
from lopt.tasks.models import check_choice, linen_model, squared_error, token_xent
from lopt.tasks.orthogonal import orthogonal
from lopt.tasks.supervised import supervised_family

# Every cell's recurrent kernel starts orthogonal, as flax's defaults, computed without QR
# (lopt.tasks.orthogonal says why).
CELLS = {name: functools.partial(cell, recurrent_kernel_init=orthogonal())
         for name, cell in (("lstm", nn.OptimizedLSTMCell), ("gru", nn.GRUCell),
                            ("vanilla", nn.SimpleCell))}
TEXT_DATASETS = ("pysource", "pydocs")


class SequenceRegressor(nn.Module):
    """Stacked LSTMs over the sequence, a linear read-out of the last hidden state."""

    hidden: int = 20
    layers: int = 1

    @nn.compact
    def __call__(self, x, train):
        del train
        for _ in range(self.layers):
            x = nn.RNN(CELLS["lstm"](self.hidden, param_dtype=x.dtype))(x)
        return nn.Dense(1)(x[:, -1])


def sine_lstm_family(noise: str = "baseline", layers: int = 1, hidden: int = 20,
                     batch_size: int = 128) -> TaskFamily:
    """Wang, Sun & Xu 2019's sequence prediction (Table 2): an LSTM with ``hidden`` units reads 10
    noisy values of A sin(ωt + φ) and predicts the next clean one (squared error). ``noise`` is
    ``baseline`` (ε ~ N(0, 0.1²)) or ``small`` (N(0, 0.01²)); ``layers=2`` is the 2-layer row.
    """
    check_choice("noise", noise, ("baseline", "small"))
    if layers not in (1, 2):
        raise ValueError(f"layers must be 1 or 2; got {layers!r}")
    data = datasets.load("sines" if noise == "baseline" else "sines_small_noise")
    model = linen_model(SequenceRegressor(hidden=hidden, layers=layers), squared_error)
    return supervised_family(f"sine_lstm_{noise}_{layers}layer_{hidden}", data, model,
                             batch_size=batch_size)


class CharRNN(nn.Module):
    """Embedding, one recurrent layer, a linear read-out over the vocabulary at every step."""

    vocab: int
    hidden: int = 32
    embed: int = 16
    cell: str = "lstm"

    @nn.compact
    def __call__(self, x, train):
        del train
        h = nn.Embed(self.vocab, self.embed)(x)
        # The carry starts in the activations' dtype (param_dtype sets it; the parameters
        # themselves are given), so a low-precision task stays in it through the scan.
        h = nn.RNN(CELLS[self.cell](self.hidden, param_dtype=h.dtype))(h)
        return nn.Dense(self.vocab)(h)


def char_rnn_family(cell: str = "lstm", hidden: int = 32, embed: int = 16, seq_len: int = 32,
                    batch_size: int = 32, init_scale=(1.0, 1.0),
                    name: Optional[str] = None, dataset: str = "pysource") -> TaskFamily:
    """Next-character cross-entropy of a recurrent language model on a text dataset
    (``pysource`` or ``pydocs``)."""
    check_choice("cell", cell, CELLS)
    _check_range("hidden", hidden, 4, 512)
    _check_range("embed", embed, 2, 256)
    _check_range("seq_len", seq_len, 4, 256)
    data = _text(dataset, seq_len)
    model = linen_model(CharRNN(vocab=data.num_classes, hidden=hidden, embed=embed, cell=cell),
                        token_xent)
    name = name or f"char_rnn_{cell}{hidden}_e{embed}_t{seq_len}" + _suffix(dataset)
    return supervised_family(name, data, model, batch_size=batch_size,
                             init_scale=init_scale)


class TransformerLM(nn.Module):
    """Pre-norm causal transformer: token + learned position embeddings, ``layers`` blocks of
    multi-head self-attention and a GELU MLP (4× width), a final LayerNorm and read-out."""

    vocab: int
    d_model: int = 32
    heads: int = 2
    layers: int = 1
    max_len: int = 256

    @nn.compact
    def __call__(self, x, train):
        del train
        t = x.shape[1]
        h = nn.Embed(self.vocab, self.d_model)(x)
        h = h + nn.Embed(self.max_len, self.d_model)(jnp.arange(t))[None]
        mask = nn.make_causal_mask(x)
        for _ in range(self.layers):
            # Normalization and attention compute in the activations' dtype (statistics in
            # float32 inside), so a low-precision task stays in it.
            a = nn.MultiHeadDotProductAttention(num_heads=self.heads, dtype=h.dtype)(
                nn.LayerNorm(dtype=h.dtype)(h), mask=mask)
            h = h + a
            m = nn.Dense(4 * self.d_model)(nn.LayerNorm(dtype=h.dtype)(h))
            h = h + nn.Dense(self.d_model)(nn.gelu(m))
        return nn.Dense(self.vocab)(nn.LayerNorm(dtype=h.dtype)(h))


def transformer_lm_family(layers: int = 1, d_model: int = 32, heads: int = 2,
                          seq_len: int = 32, batch_size: int = 32,
                          init_scale=(1.0, 1.0), name: Optional[str] = None,
                          dataset: str = "pysource") -> TaskFamily:
    """Next-character cross-entropy of a 1–8 layer causal transformer on a text dataset
    (``pysource`` or ``pydocs``)."""
    if layers not in range(1, 9):
        raise ValueError(f"layers must be an integer between 1 and 8; got {layers!r}")
    _check_range("d_model", d_model, 8, 512)
    if d_model % heads:
        raise ValueError(f"heads must divide d_model ({d_model}); got {heads!r}")
    _check_range("seq_len", seq_len, 4, 256)
    data = _text(dataset, seq_len)
    model = linen_model(TransformerLM(vocab=data.num_classes, d_model=d_model, heads=heads,
                                      layers=layers), token_xent)
    name = name or f"transformer_lm_{layers}x{d_model}_h{heads}_t{seq_len}" + _suffix(dataset)
    return supervised_family(name, data, model, batch_size=batch_size,
                             init_scale=init_scale)


def _text(dataset: str, seq_len: int):
    if dataset not in TEXT_DATASETS:
        raise ValueError(f"dataset must be a text dataset ({', '.join(TEXT_DATASETS)}); got "
                         f"{dataset!r}")
    return datasets.load(dataset, seq_len=seq_len)


def _suffix(dataset: str) -> str:
    return "" if dataset == "pysource" else f"_{dataset}"  # pysource names stay as they were


def _check_range(field, value, low, high):
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{field} must be an integer between {low} and {high}; got {value!r}")
