"""HyperAdam (Wang, Sun & Xu 2019): a learned, task-adaptive mixture of J Adams."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lopt.rules.base import UpdateRule, per_coordinate, unzip, zeros_per_coordinate
from lopt.rules.nets import dense, init_dense, init_lstm_stack, lstm_stack


def _logit(p):
    return float(np.log(p) - np.log1p(-p))


def hyperadam(num_adams: int = 20, hidden: int = 20, learning_rate: float = 0.01,
              eps: float = 1e-24, norm_decay: float = 0.95) -> UpdateRule:
    """Algorithm 2 of Wang, Sun & Xu 2019: w_t = w_{t−1} − α d_t, d_t = Σ_j ρ_t^j ⊙ m̂_t^j.

    StateCell: the gradient normalized by its running RMS (decay ``norm_decay``, for Adam's
    scale invariance), a fully connected layer with ELU, and an LSTM give the state s_t.
    AdamCell: J candidate Adams whose decay rates β_t = σ([m'_{t−1}, s_t] θ_u + b_u) and
    γ_t = σ([m'_{t−1}, s_t] θ_r + b_r) are produced every step (m'_{t−1}: the previous moment
    field); m_t = β_t m_{t−1} + (1 − β_t) g, v_t = γ_t v_{t−1} + (1 − γ_t) g², bias correction
    through β̂_t = β_t β̂_{t−1} + (1 − β_t), γ̂_t likewise (β̂_0 = γ̂_0 = 0), and the moment field
    m̂_t = (m_t/β̂_t) / √(v_t/γ̂_t + ε). WeightCell: ρ_t = F_q(s_t), a linear map. J =
    ``num_adams`` (20 in the paper); the decay rates start spread over [0.5, 0.95] (β) and at
    0.999 (γ), the weights at 1/J.
    """
    for field, value in (("num_adams", num_adams), ("hidden", hidden)):
        if int(value) < 1:
            raise ValueError(f"{field} must be a positive integer, got {value}")
    J = num_adams

    def init_meta(key):
        k_in, k_cell, k_u, k_r, k_q = jax.random.split(key, 5)
        betas = np.linspace(0.5, 0.95, J) if J > 1 else np.array([0.9])
        return {
            "input": init_dense(k_in, 1, hidden),
            "cells": init_lstm_stack(jax.random.split(k_cell, 1), hidden, hidden),
            "beta": init_dense(k_u, J + hidden, J, scale=0.1, bias=0.0) | {
                "b": jnp.asarray([_logit(b) for b in betas], jnp.result_type(float))},
            "gamma": init_dense(k_r, J + hidden, J, scale=0.1, bias=_logit(0.999)),
            "weight": init_dense(k_q, hidden, J, scale=0.0, bias=1.0 / J),
        }

    def init(theta, params):
        zeros_j = zeros_per_coordinate(params, (J,))
        return {"n": zeros_per_coordinate(params, ()),
                "h": zeros_per_coordinate(params, (1, hidden)),
                "c": zeros_per_coordinate(params, (1, hidden)),
                "m": zeros_j, "v": zeros_j, "beta_hat": zeros_j, "gamma_hat": zeros_j,
                "field": zeros_j, "count": jnp.zeros((), jnp.int32)}

    def one_coordinate(theta, param, g, st, count):
        del param
        n = norm_decay * st["n"] + (1 - norm_decay) * g**2
        g_norm = g / (jnp.sqrt(n / (1 - norm_decay**count)) + 1e-8)
        x = jax.nn.elu(dense(theta["input"], g_norm[None]))
        s, h, c = lstm_stack(theta["cells"], x, st["h"], st["c"])
        context = jnp.concatenate([st["field"], s])
        # β and γ share their input: one matmul of twice the width runs faster than two.
        both = context @ jnp.concatenate([theta["beta"]["w"], theta["gamma"]["w"]], axis=1)
        beta = jax.nn.sigmoid(both[:J] + theta["beta"]["b"])
        gamma = jax.nn.sigmoid(both[J:] + theta["gamma"]["b"])
        m = beta * st["m"] + (1 - beta) * g
        v = gamma * st["v"] + (1 - gamma) * g**2
        beta_hat = beta * st["beta_hat"] + (1 - beta)
        gamma_hat = gamma * st["gamma_hat"] + (1 - gamma)
        field = (m / beta_hat) / jnp.sqrt(v / gamma_hat + eps)
        rho = dense(theta["weight"], s)
        step = -learning_rate * jnp.sum(rho * field)
        return step, {"n": n, "h": h, "c": c, "m": m, "v": v, "beta_hat": beta_hat,
                      "gamma_hat": gamma_hat, "field": field}

    names = ("n", "h", "c", "m", "v", "beta_hat", "gamma_hat", "field")

    def update(theta, state, grads, params, loss=None):
        del loss
        params = grads if params is None else params
        count = state["count"] + 1

        def apply(th, p, g, *per):
            step, new = one_coordinate(th, p, g, dict(zip(names, per)), count)
            return (step,) + tuple(new[k] for k in names)

        out = per_coordinate(apply)(theta, params, grads, *(state[k] for k in names))
        parts = unzip(params, out, 1 + len(names))
        new = dict(zip(names, parts[1:]))
        new["count"] = count
        return parts[0], new

    return UpdateRule(init_meta=init_meta, init=init, update=update, name="hyperadam",
                      config={"num_adams": num_adams, "hidden": hidden,
                              "learning_rate": learning_rate, "eps": eps,
                              "norm_decay": norm_decay})
