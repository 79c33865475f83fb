"""Small networks applied to one coordinate's features: dense layers and LSTM stacks.

Weights are plain dicts of arrays so that rules' thetas serialize by tree path.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def init_dense(key, fan_in: int, fan_out: int, scale: float = 1.0, bias=None) -> dict:
    """A dense layer with N(0, scale²/fan_in) weights and zero (or the given) bias."""
    w = scale * jax.random.normal(key, (fan_in, fan_out)) / jnp.sqrt(fan_in)
    # the default float dtype (float64 under x64), as the weights
    b = jnp.zeros((fan_out,)) if bias is None else jnp.broadcast_to(
        jnp.asarray(bias, jnp.result_type(float)), (fan_out,))
    return {"w": w, "b": b}


def dense(weights: dict, x: jax.Array) -> jax.Array:
    return linear(x, weights["w"]) + weights["b"]


def linear(x: jax.Array, w: jax.Array) -> jax.Array:
    """x @ w, written so that XLA's CPU backend fuses it into neighbouring elementwise passes
    when the matrix has a handful of inputs: a sum of rank-1 terms (a [n, 2]×[2, k] matmul
    runs at a few percent of the machine's matmul rate, benchmarks/perf). One or two outputs
    stay a matmul: written as multiply-and-sums they became reductions over the minor axis,
    1.26× slower in PES on the 16→32→4 MLP and 1.09-1.21× in the per-parameter MLPs' 2.1M
    update (measured in turns in one process, docs/performance.md)."""
    if x.shape[-1] <= 4:
        out = x[..., 0, None] * w[0]
        for k in range(1, x.shape[-1]):
            out = out + x[..., k, None] * w[k]
        return out
    return x @ w


def lstm_cell(weights: dict, x: jax.Array, h: jax.Array, c: jax.Array):
    """One LSTM step (Hochreiter & Schmidhuber 1997), gates in the order input, forget, cell,
    output: z = [x; h] W + b, c' = σ(f) c + σ(i) tanh(g), h' = σ(o) tanh(c')."""
    n_in = x.shape[-1]
    if n_in <= 4:
        z = linear(x, weights["w"][:n_in]) + h @ weights["w"][n_in:] + weights["b"]
    else:  # one matmul of fan-in n_in + hidden runs faster than two of half the fan-in
        z = jnp.concatenate([x, h], axis=-1) @ weights["w"] + weights["b"]
    i, f, g, o = jnp.split(z, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return h, c


def init_lstm_cell(key, fan_in: int, hidden: int) -> dict:
    """An LSTM cell of ``hidden`` units on ``fan_in`` inputs for ``lstm_cell``: N(0, 1/(fan_in +
    hidden)) weights, forget-gate bias 1 so the cell state starts out remembered rather than
    wiped."""
    scale = 1.0 / jnp.sqrt(fan_in + hidden)
    w = scale * jax.random.normal(key, (fan_in + hidden, 4 * hidden))
    b = jnp.zeros((4 * hidden,)).at[hidden:2 * hidden].set(1.0)
    return {"w": w, "b": b}


def init_lstm_stack(keys, fan_in: int, hidden: int) -> list:
    """One ``init_lstm_cell`` of ``hidden`` units per key, the first on ``fan_in`` inputs."""
    return [init_lstm_cell(k, fan_in if i == 0 else hidden, hidden) for i, k in enumerate(keys)]


def lstm_stack(cells: list, x: jax.Array, h: jax.Array, c: jax.Array):
    """Run one step of a stack of LSTM cells; h and c have shape [layers, hidden]."""
    new_h, new_c = [], []
    for layer, weights in enumerate(cells):
        hl, cl = lstm_cell(weights, x, h[layer], c[layer])
        new_h.append(hl)
        new_c.append(cl)
        x = hl
    return x, jnp.stack(new_h), jnp.stack(new_c)


def init_mlp(key, fan_in: int, hidden: int, layers: int, outputs: int = 2) -> list:
    """``layers`` ReLU layers of ``hidden`` units, then ``outputs``: N(0, 1/fan_in) weights."""
    sizes = [fan_in] + [hidden] * layers + [outputs]
    keys = jax.random.split(key, len(sizes) - 1)
    return [init_dense(k, a, b) for k, a, b in zip(keys, sizes[:-1], sizes[1:])]


def apply_mlp(layers: list, groups: list, bias_extra=0.0):
    """The MLP on one leaf's normalized feature groups ([..., k] each), the first layer taken
    one group at a time (the same sum as the concatenated features times W, without building
    that array); ``bias_extra`` is added to the first layer's bias (a per-tensor context
    already multiplied by its weights). Returns the outputs [..., outputs]."""
    w = layers[0]["w"]
    pre, start = layers[0]["b"] + bias_extra, 0
    for x in groups:
        stop = start + x.shape[-1]
        pre = pre + linear(x, w[start:stop])
        start = stop
    h = jax.nn.relu(pre)
    for i, layer in enumerate(layers[1:]):
        h = linear(h, layer["w"]) + layer["b"]
        if i < len(layers) - 2:
            h = jax.nn.relu(h)
    return h


def log_magnitude(x):
    """A log-magnitude input in [−1, 1]: clip(log(x + 10⁻¹⁰), −10, 10)/10. A plain log feeds
    log(10⁻⁸) ≈ −18 for a zero-initialized bias, saturating the LSTM it enters."""
    return jnp.clip(jnp.log(x + 1e-10), -10.0, 10.0) / 10.0


# From this many coordinates a tensor's per-coordinate MLP runs column by column
# (``columnwise_network``): about 1.8x faster there on CPU, for ~0.25 s more compile per
# tensor, which small tensors (and meta-training's small tasks) do not repay.
COLUMNWISE_MIN = 1 << 14


def columnwise_network(terms: list, bias, layers: list, outputs: int = 2) -> list:
    """A per-coordinate ReLU MLP with every feature column and hidden unit its own array:
    ``terms`` are (feature column [...], its first-layer weights [hidden]), ``bias`` the first
    layer's, ``layers`` the rest ({"w", "b"} each, ReLU between); returns the first
    ``outputs`` outputs. The same sums as the matrix form, in another order: XLA fuses the
    whole network into a few loops that read the features once instead of writing a
    [..., features] array and running matmuls a few units wide."""
    units = [sum(col * w[h] for col, w in terms) + bias[h] for h in range(bias.shape[0])]
    for i, layer in enumerate(layers):
        width = outputs if i == len(layers) - 1 else layer["w"].shape[1]
        active = [jax.nn.relu(u) for u in units]
        units = [sum(a * layer["w"][j, k] for j, a in enumerate(active)) + layer["b"][k]
                 for k in range(width)]
    return units
