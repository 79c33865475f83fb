"""RNNprop (Lv, Chen & Zhang 2017), the learned baseline of Wang, Sun & Xu 2019."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lopt.rules.base import UpdateRule, per_coordinate, unzip, zeros_per_coordinate
from lopt.rules.nets import dense, init_dense, init_lstm_stack, lstm_stack


def rnnprop(hidden: int = 20, layers: int = 2, beta1: float = 0.95, beta2: float = 0.95,
            eps: float = 1e-8, output_scale: float = 0.1) -> UpdateRule:
    """Δθ = 0.1 · tanh(W h_t + b), h_t from an ELU layer of 20 and a 2×20 LSTM.

    The inputs are Adam's normalized quantities g/√v̂ and m̂/√v̂ with β1 = β2 = 0.95 and bias
    correction, which makes the rule invariant to the scale of the gradient.
    """
    for field, value in (("hidden", hidden), ("layers", layers)):
        if int(value) < 1:
            raise ValueError(f"{field} must be a positive integer, got {value}")

    def init_meta(key):
        k_in, k_cells, k_out = jax.random.split(key, 3)
        return {"input": init_dense(k_in, 2, hidden),
                "cells": init_lstm_stack(jax.random.split(k_cells, layers), hidden, hidden),
                "out": init_dense(k_out, hidden, 1, scale=0.1)}

    def init(theta, params):
        return {"m": zeros_per_coordinate(params, ()), "v": zeros_per_coordinate(params, ()),
                "h": zeros_per_coordinate(params, (layers, hidden)),
                "c": zeros_per_coordinate(params, (layers, hidden)),
                "count": jnp.zeros((), jnp.int32)}

    def one_coordinate(theta, param, grad, m, v, h, c, count):
        del param
        m = beta1 * m + (1 - beta1) * grad
        v = beta2 * v + (1 - beta2) * grad**2
        root = jnp.sqrt(v / (1 - beta2**count)) + eps
        features = jnp.stack([grad / root, m / (1 - beta1**count) / root])
        x = jax.nn.elu(dense(theta["input"], features))
        x, h, c = lstm_stack(theta["cells"], x, h, c)
        return output_scale * jnp.tanh(dense(theta["out"], x)[0]), m, v, h, c

    def update(theta, state, grads, params, loss=None):
        del loss
        params = grads if params is None else params
        count = state["count"] + 1
        lifted = per_coordinate(lambda th, p, g, m, v, h, c: one_coordinate(th, p, g, m, v, h, c,
                                                                              count))
        out = lifted(theta, params, grads, state["m"], state["v"], state["h"], state["c"])
        updates, m, v, h, c = unzip(params, out, 5)
        return updates, {"m": m, "v": v, "h": h, "c": c, "count": count}

    return UpdateRule(init_meta=init_meta, init=init, update=update, name="rnnprop",
                      config={"hidden": hidden, "layers": layers, "beta1": beta1, "beta2": beta2,
                              "eps": eps, "output_scale": output_scale})
