"""The per-parameter MLP learned optimizer of Metz et al. 2019: Δθ = d · exp(m · α) · β from an
MLP on each coordinate's momenta, normalized features and step embedding; its features and
per-coordinate MLP are shared with ``lopt.rules.hierarchical``."""
from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

from lopt.rules.base import UpdateRule, per_coordinate, zeros_per_coordinate
from lopt.rules.nets import dense, init_dense, linear

DEFAULT_DECAYS = (0.5, 0.9, 0.99, 0.999)
TIME_SCALES = (1, 3, 10, 30, 100, 300, 1000, 3000, 10000)


def _second_moment_rsqrt(v, count, decay=0.999, eps=1e-8):
    return jax.lax.rsqrt(v / (1 - decay**count) + eps)


def feature_groups(param, grad, moms, v, count):
    """Metz et al. 2019's per-parameter inputs for one coordinate, in four groups whose
    concatenation is the feature vector [F]: (gradient, parameter), the momenta at several
    timescales, and the gradient and the momenta normalized by the second moment."""
    rs = _second_moment_rsqrt(v, count)
    return jnp.stack([grad, param]), moms, (grad * rs)[None], moms * rs


def feature_mean_squares(param, grad, moms, v, count):
    """The mean square of every feature of ``feature_groups`` over one tensor, [F] in the same
    order, by reductions over the tensor that never materialize its features."""
    rs = _second_moment_rsqrt(v, count)
    ms = lambda x, axes=None: jnp.mean(x**2, axis=axes)
    mom_axes = tuple(range(moms.ndim - 1))
    return jnp.concatenate([jnp.stack([ms(grad), ms(param)]), ms(moms, mom_axes),
                            ms(grad * rs)[None], ms(moms * rs[..., None], mom_axes)])


def feature_scales(mean_squares):
    """1/RMS of every raw feature over its tensor: dividing by it keeps any feature's scale
    from dominating."""
    return jax.lax.rsqrt(mean_squares + 1e-12)


def first_layer_bias(theta, n_features, context):
    """The first layer's bias with the step/tensor context folded in: the context is the same
    for every coordinate of a tensor, so c·W_c + b is computed once per tensor."""
    w, b = theta["hidden"]["w"], theta["hidden"]["b"]
    return context @ w[n_features:] + b


def time_embedding(count, dtype=jnp.float32):
    """tanh(t / τ) for τ in 1 … 10⁴: the training step as bounded features."""
    return jnp.tanh(count.astype(dtype) / jnp.asarray(TIME_SCALES, dtype))


def moments(state, grads, decays, count):
    """The momenta at ``decays`` and the 0.999 second moment, updated with ``grads``."""
    d = jnp.asarray(decays)
    moms = jax.tree.map(lambda m, g: d * m + (1 - d) * g[..., None], state["moms"], grads)
    v = jax.tree.map(lambda v, g: 0.999 * v + 0.001 * g**2, state["v"], grads)
    return moms, v


def _mlp_coordinate(theta, scales, bias, param, grad, moms, v, count, exp_scale, step_scale):
    """One coordinate: hidden ReLU layer, then direction · exp(magnitude · α) · β.

    The first layer takes ``feature_groups`` one group at a time (the same sum as the feature
    vector times W): each group is a few rank-1 terms that XLA fuses with the ReLU, where
    assembling the feature vector first costs a concatenation pass of its own."""
    w = theta["hidden"]["w"]
    pre, start = bias, 0
    for x in feature_groups(param, grad, moms, v, count):
        stop = start + x.shape[-1]
        pre = pre + linear(x * scales[start:stop], w[start:stop])
        start = stop
    h = jax.nn.relu(pre)
    direction, magnitude = dense(theta["out"], h)
    return direction * jnp.exp(magnitude * exp_scale) * step_scale


def mlp_all_coordinates(theta, params, grads, moms, v, count, contexts, mean_squares,
                         exp_scale, step_scale):
    """The per-parameter MLP on every coordinate, with each tensor's context (a tree of
    vectors, one per leaf) entering its first layer and its features' mean squares (a tree
    of ``feature_mean_squares``) scaling them."""
    def tensor_inputs(_, ms, context):
        scales = feature_scales(ms)
        return scales, first_layer_bias(theta, scales.shape[0], context)

    per_tensor = jax.tree.map(tensor_inputs, params, mean_squares, contexts)
    step = lambda th, tensor, p, g, m, vv: _mlp_coordinate(th, *tensor, p, g, m, vv, count,
                                                           exp_scale, step_scale)
    return per_coordinate(step)(theta, params, grads, moms, v, per_tensor=per_tensor)


def check_config(hidden, decays):
    if int(hidden) < 1:
        raise ValueError(f"hidden must be a positive integer, got {hidden}")
    if not decays or any(not 0.0 <= d < 1.0 for d in decays):
        raise ValueError(f"decays must be numbers in [0, 1), got {tuple(decays)}")


def per_parameter_mlp(hidden: int = 32, decays: Sequence[float] = DEFAULT_DECAYS,
                      exp_scale: float = 1e-3, step_scale: float = 1e-3) -> UpdateRule:
    """Metz et al. 2019: Δθ = d · exp(m · α) · β, with (d, m) the two outputs of an
    MLP (one hidden layer of 32) on the per-parameter features and tanh embeddings of the step.
    α = ``exp_scale``, β = ``step_scale`` (both 10⁻³ in the paper) keep early steps small."""
    decays = tuple(float(d) for d in decays)
    check_config(hidden, decays)
    n_feat = 2 + 2 * len(decays) + 1 + len(TIME_SCALES)

    def init_meta(key):
        k1, k2 = jax.random.split(key)
        return {"hidden": init_dense(k1, n_feat, hidden), "out": init_dense(k2, hidden, 2)}

    def init(theta, params):
        return {"moms": zeros_per_coordinate(params, (len(decays),)),
                "v": zeros_per_coordinate(params, ()), "count": jnp.zeros((), jnp.int32)}

    def update(theta, state, grads, params, loss=None):
        del loss
        count = state["count"] + 1
        moms, v = moments(state, grads, decays, count)
        context = time_embedding(count)
        squares = jax.tree.map(lambda p, g, m, vv: feature_mean_squares(p, g, m, vv, count),
                               params, grads, moms, v)
        updates = mlp_all_coordinates(theta, params, grads, moms, v, count,
                                       jax.tree.map(lambda _: context, params), squares,
                                       exp_scale, step_scale)
        return updates, {"moms": moms, "v": v, "count": count}

    return UpdateRule(init_meta=init_meta, init=init, update=update, name="per_parameter_mlp",
                      config={"hidden": hidden, "decays": list(decays), "exp_scale": exp_scale,
                              "step_scale": step_scale})
