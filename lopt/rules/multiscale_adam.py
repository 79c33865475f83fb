"""Multiscale Adam (Shahid 2017): learned combinations of Adam at k timescales."""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from lopt.rules.base import UpdateRule, per_coordinate, unzip, zeros_per_coordinate
from lopt.rules.nets import dense, init_dense, init_lstm_stack, lstm_stack

KINDS = ("lwa_a", "lwa_b", "lwa_c", "mlp", "rnn_a", "rnn_b")
DEFAULT_BETAS = (0.99, 0.9, 0.8, 0.7, 0.6, 0.5)


def adam_steps(m, v, grad, count, betas, beta2, eps):
    """Per-coordinate Adam at several β1: the new moments and the k bias-corrected steps
    m̂_j / (√v̂ + ε), with m_j ← β_j m_j + (1 − β_j) g and v ← β₂ v + (1 − β₂) g²."""
    betas = jnp.asarray(betas, grad.dtype)
    m = betas * m + (1 - betas) * grad
    v = beta2 * v + (1 - beta2) * grad**2
    m_hat = m / (1 - betas**count)
    v_hat = v / (1 - beta2**count)
    return m, v, m_hat / (jnp.sqrt(v_hat) + eps)


def lwa_weights(kind: str, a: jax.Array) -> jax.Array:
    """LWA_a: weights summing to one, w = a − mean(a) + 1/k (the projection of a onto Σw = 1;
    a/Σa would be singular as Σa → 0); LWA_b: positive and summing to one (softmax);
    LWA_c: unconstrained."""
    if kind == "lwa_a":
        return a - jnp.mean(a) + 1.0 / a.shape[-1]
    if kind == "lwa_b":
        return jax.nn.softmax(a)
    return a


def multiscale_adam(kind: str = "lwa_a", betas: Sequence[float] = DEFAULT_BETAS,
                    beta2: float = 0.999, eps: float = 1e-8, learning_rate: float = 1e-3,
                    hidden: int = 50) -> UpdateRule:
    """Δx = −η Σ_j w_j · Adam_{β_j}(g): Adam at k timescales β_j as the inputs (Shahid 2017).

    ``kind``: ``lwa_a``/``lwa_b``/``lwa_c`` learn k global weights (sum to one / positive and
    sum to one / unconstrained); ``mlp`` (one hidden layer of ``hidden``), ``rnn_a`` (one LSTM
    layer of ``hidden``) and ``rnn_b`` (two) read the k Adam steps of each coordinate and output
    that coordinate's k weights, starting from the uniform 1/k.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")
    betas = tuple(float(b) for b in betas)
    if not betas or any(not 0.0 <= b < 1.0 for b in betas):
        raise ValueError(f"betas must be a non-empty list of numbers in [0, 1), got {betas}")
    k = len(betas)
    layers = {"rnn_a": 1, "rnn_b": 2}.get(kind, 0)

    def init_meta(key):
        if kind.startswith("lwa"):
            a = jnp.zeros((k,)) if kind == "lwa_b" else jnp.full((k,), 1.0 / k)
            return {"a": a}
        k1, k2 = jax.random.split(key)
        out = init_dense(k2, hidden, k, scale=0.0, bias=1.0 / k)
        if kind == "mlp":
            return {"hidden": init_dense(k1, k, hidden), "out": out}
        return {"cells": init_lstm_stack(jax.random.split(k1, layers), k, hidden), "out": out}

    def init(theta, params):
        state = {"m": zeros_per_coordinate(params, (k,)), "v": zeros_per_coordinate(params, ()),
                 "count": jnp.zeros((), jnp.int32)}
        if layers:
            state["h"] = zeros_per_coordinate(params, (layers, hidden))
            state["c"] = zeros_per_coordinate(params, (layers, hidden))
        return state

    def one_coordinate(theta, param, grad, m, v, h, c, count):
        del param
        m, v, steps = adam_steps(m, v, grad, count, betas, beta2, eps)
        if kind.startswith("lwa"):
            w = lwa_weights(kind, theta["a"]).astype(grad.dtype)
        elif kind == "mlp":
            w = dense(theta["out"], jnp.tanh(dense(theta["hidden"], steps)))
        else:
            out, h, c = lstm_stack(theta["cells"], steps, h, c)
            w = dense(theta["out"], out)
        return -learning_rate * jnp.sum(w * steps), m, v, h, c

    def update(theta, state, grads, params, loss=None):
        del loss
        params = grads if params is None else params
        count = state["count"] + 1
        h = state.get("h", zeros_per_coordinate(params, (0,)))
        c = state.get("c", zeros_per_coordinate(params, (0,)))
        lifted = per_coordinate(lambda th, p, g, m, v, h, c: one_coordinate(th, p, g, m, v, h, c,
                                                                              count))
        out = lifted(theta, params, grads, state["m"], state["v"], h, c)
        updates, m, v, h, c = unzip(params, out, 5)
        new = {"m": m, "v": v, "count": count}
        if layers:
            new.update(h=h, c=c)
        return updates, new

    return UpdateRule(init_meta=init_meta, init=init, update=update, name="multiscale_adam",
                      config={"kind": kind, "betas": list(betas), "beta2": beta2, "eps": eps,
                              "learning_rate": learning_rate, "hidden": hidden})
