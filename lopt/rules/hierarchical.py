"""The hierarchical learned optimizer of Wichrowska et al. 2017 and Metz et al. 2020: a
per-tensor LSTM whose context conditions the per-parameter MLP of every coordinate of its
tensor."""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from lopt.rules.base import UpdateRule, state_dtype, zeros_per_coordinate
from lopt.rules.nets import dense, init_dense, init_lstm_cell, log_magnitude, lstm_cell
from lopt.rules.per_parameter_mlp import (
    DEFAULT_DECAYS,
    TIME_SCALES,
    check_config,
    feature_mean_squares,
    mlp_all_coordinates,
    moments,
    time_embedding,
)


def hierarchical(hidden: int = 32, tensor_hidden: int = 16, context: int = 8,
                 decays: Sequence[float] = DEFAULT_DECAYS, exp_scale: float = 1e-3,
                 step_scale: float = 1e-3) -> UpdateRule:
    """Wichrowska et al. 2017 / Metz et al. 2020 (Metz et al. 2019): a per-tensor LSTM, fed the
    tensor's gradient and parameter RMS, its momenta's RMS, the training loss and its change
    since the last step (all as ``log_magnitude``), the validation loss where the task has one
    (its log-magnitude gap to the training loss, and a flag) and the step embedding, outputs a
    context vector that is an extra input of the per-parameter MLP of every coordinate of that
    tensor."""
    decays = tuple(float(d) for d in decays)
    check_config(hidden, decays)
    n_feat = 2 + 2 * len(decays) + 1 + len(TIME_SCALES)
    n_tensor = 2 + len(decays) + 4 + len(TIME_SCALES)

    def init_meta(key):
        k1, k2, k3, k4 = jax.random.split(key, 4)
        return {"hidden": init_dense(k1, n_feat + context, hidden),
                "out": init_dense(k2, hidden, 2),
                "tensor_lstm": init_lstm_cell(k3, n_tensor, tensor_hidden),
                "context": init_dense(k4, tensor_hidden, context, scale=0.1)}

    def init(theta, params):
        per_tensor = jax.tree.map(lambda p: jnp.zeros((tensor_hidden,), state_dtype(p.dtype)),
                                  params)
        return {"moms": zeros_per_coordinate(params, (len(decays),)),
                "v": zeros_per_coordinate(params, ()), "count": jnp.zeros((), jnp.int32),
                "h": per_tensor, "c": per_tensor, "last_loss": jnp.zeros(())}

    def update(theta, state, grads, params, loss=None):
        if loss is None:
            raise ValueError("hierarchical needs the training loss (pass value=loss)")
        if isinstance(loss, dict):
            train_loss, valid_loss, has_validation = loss["train"], loss["valid"], 1.0
        else:
            train_loss, valid_loss, has_validation = loss, loss, 0.0
        count = state["count"] + 1
        moms, v = moments(state, grads, decays, count)
        step_emb = time_embedding(count)
        log_loss = log_magnitude(jnp.abs(train_loss))
        loss_change = jnp.where(count > 1, log_loss - state["last_loss"], 0.0)
        # Validation minus training log loss (0 without a validation split) and a flag saying which.
        gap = has_validation * (log_magnitude(jnp.abs(valid_loss)) - log_loss)

        squares = jax.tree.map(lambda p, g, m, vv: feature_mean_squares(p, g, m, vv, count),
                               params, grads, moms, v)

        def tensor_context(ms, h, c):
            # RMS of the gradient, the parameter and each momentum: the features' first 2 + k.
            rms = log_magnitude(jnp.sqrt(ms[:2 + len(decays)]))
            x = jnp.concatenate([rms, jnp.stack([log_loss, loss_change, gap,
                                                 jnp.asarray(has_validation, log_loss.dtype)]),
                                 step_emb])
            h, c = lstm_cell(theta["tensor_lstm"], x.astype(h.dtype), h, c)
            return dense(theta["context"], h), h, c

        ctx_tree = jax.tree.map(lambda _, ms, h, c: tensor_context(ms, h, c), params, squares,
                                state["h"], state["c"])
        pick = lambda i: jax.tree.map(lambda _, t: t[i], params, ctx_tree)
        contexts, h, c = pick(0), pick(1), pick(2)
        updates = mlp_all_coordinates(
            theta, params, grads, moms, v, count,
            jax.tree.map(lambda _, ctx: jnp.concatenate([step_emb, ctx]), params, contexts),
            squares, exp_scale, step_scale)
        return updates, {"moms": moms, "v": v, "count": count, "h": h, "c": c,
                         "last_loss": log_loss}

    return UpdateRule(init_meta=init_meta, init=init, update=update, name="hierarchical",
                      wants_valid_loss=True,
                      config={"hidden": hidden, "tensor_hidden": tensor_hidden,
                              "context": context, "decays": list(decays),
                              "exp_scale": exp_scale, "step_scale": step_scale})
