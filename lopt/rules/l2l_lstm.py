"""The coordinatewise LSTM optimizer of Andrychowicz et al. 2016 ("L2L")."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lopt.rules.base import UpdateRule, per_coordinate, unzip, zeros_per_coordinate
from lopt.rules.nets import dense, init_lstm_stack, lstm_stack


def log_sign_preprocess(g: jax.Array, p: float = 10.0) -> jax.Array:
    """Andrychowicz et al. 2016's gradient preprocessing: (log|∇|/p, sgn ∇) if |∇| ≥ e^{−p}, else
    (−1, e^p ∇)."""
    threshold = jnp.exp(-p)
    big = jnp.abs(g) >= threshold
    log_part = jnp.where(big, jnp.log(jnp.maximum(jnp.abs(g), threshold)) / p, -1.0)
    sign_part = jnp.where(big, jnp.sign(g), jnp.exp(p) * g)
    return jnp.stack([log_part, sign_part], axis=-1)


def l2l_lstm(hidden: int = 20, layers: int = 2, preprocess_p: float = 10.0,
             output_scale: float = 0.1) -> UpdateRule:
    """L2L: θ_{t+1} = θ_t + g_t, [g_t; h_{t+1}] = m(∇_t, h_t, φ) with m a coordinatewise LSTM.

    Andrychowicz et al. 2016: a ``layers``×``hidden`` LSTM (2×20 in the paper) whose weights φ are
    shared by all coordinates while each coordinate keeps its own hidden state; the input is the
    log/sign preprocessed gradient with constant p; a linear read-out times ``output_scale`` is the
    step.
    """
    for field, value in (("hidden", hidden), ("layers", layers)):
        if int(value) < 1:
            raise ValueError(f"{field} must be a positive integer, got {value}")
    if preprocess_p <= 0:
        raise ValueError(f"preprocess_p must be positive, got {preprocess_p}")

    def init_meta(key):
        keys = jax.random.split(key, layers + 1)
        out_w = 0.01 * jax.random.normal(keys[-1], (hidden, 1))
        return {"cells": init_lstm_stack(keys[:layers], 2, hidden),
                "out": {"w": out_w, "b": jnp.zeros((1,))}}

    def init(theta, params):
        del theta
        return {"h": zeros_per_coordinate(params, (layers, hidden)),
                "c": zeros_per_coordinate(params, (layers, hidden))}

    def step_one_coordinate(theta, param, grad, h, c):
        del param
        x = log_sign_preprocess(grad, preprocess_p)
        x, h, c = lstm_stack(theta["cells"], x, h, c)
        step = dense(theta["out"], x)[0] * output_scale
        return step, h, c

    lifted = per_coordinate(step_one_coordinate)

    def update(theta, state, grads, params, loss=None):
        del loss
        if params is None:
            params = grads
        out = lifted(theta, params, grads, state["h"], state["c"])
        updates, h, c = unzip(params, out, 3)
        return updates, {"h": h, "c": c}

    return UpdateRule(init_meta=init_meta, init=init, update=update, name="l2l_lstm",
                      config={"hidden": hidden, "layers": layers, "preprocess_p": preprocess_p,
                              "output_scale": output_scale})
