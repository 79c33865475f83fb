"""Per-example objectives and the adapter from a flax.linen module to a ``Model``."""
from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from lopt.tasks.supervised import Model

ACTIVATIONS = {
    "sigmoid": jax.nn.sigmoid,
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "elu": jax.nn.elu,
    "gelu": jax.nn.gelu,
}
INITIALIZERS = {
    "lecun_normal": nn.initializers.lecun_normal(),
    "he_normal": nn.initializers.he_normal(),
    "glorot_uniform": nn.initializers.glorot_uniform(),
    "normal_0.1": nn.initializers.normal(0.1),
}


def check_choice(field: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{field} must be one of {', '.join(sorted(allowed))}; got {value!r}")


def check_widths(field: str, widths: Sequence[int], low: int = 1, high: int = 4096) -> tuple:
    widths = tuple(int(w) for w in widths)
    if not widths or any(not low <= w <= high for w in widths):
        raise ValueError(f"{field} must hold widths between {low} and {high}; got {widths}")
    return widths


def softmax_xent(out, x, y):
    """Cross-entropy of logits ``out`` against integer labels; correct = argmax hits."""
    del x
    return (optax.softmax_cross_entropy_with_integer_labels(out, y),
            (jnp.argmax(out, -1) == y).astype(jnp.float32))


def squared_error(out, x, y):
    """(prediction − target)² per example; no accuracy."""
    del x
    return jnp.square(out.reshape(y.shape) - y), None


def token_xent(out, x, y):
    """Next-token cross-entropy, averaged over the window; correct = per-token hit rate."""
    del x
    losses = optax.softmax_cross_entropy_with_integer_labels(out, y)
    return losses.mean(-1), (jnp.argmax(out, -1) == y).astype(jnp.float32).mean(-1)


def pixel_bce(out, x, y):
    """Reconstruction: Bernoulli cross-entropy of logits ``out`` against inputs in [0, 1],
    averaged over pixels."""
    del y
    flat = x.reshape(x.shape[0], -1)
    return optax.sigmoid_binary_cross_entropy(out, jnp.clip(flat, 0.0, 1.0)).mean(-1), None


def negative_elbo(out, x, y):
    """A VAE's −ELBO per pixel: (Σ Bernoulli reconstruction + KL(q(z|x) ‖ N(0, I))) / pixels."""
    logits, kl = out
    recon, _ = pixel_bce(logits, x, y)
    return recon + kl / logits.shape[-1], None


def linen_model(module: nn.Module, objective: Callable, stateful: bool = False) -> Model:
    """A flax.linen module called as ``module(x, train)`` as a Model. Collections other than
    ``params`` (batch norm's ``batch_stats``) are the task state; the model's random stream
    (a VAE's sample) is the ``sample`` rng."""

    def init(key, x):
        k_params, k_sample = jax.random.split(key)
        variables = module.init({"params": k_params, "sample": k_sample}, x, False)
        params = variables["params"]
        state = {k: v for k, v in variables.items() if k != "params"}
        return params, state

    def apply(params, state, x, key, train):
        variables = {"params": params, **state}
        if stateful and train:
            out, mutated = module.apply(variables, x, True, rngs={"sample": key},
                                        mutable=list(state))
            return out, dict(mutated)
        return module.apply(variables, x, train, rngs={"sample": key}), state

    return Model(init=init, apply=apply, objective=objective, stateful=stateful)


class MLP(nn.Module):
    """Dense layers with one activation; the input is flattened."""

    hidden: Sequence[int]
    out: int
    activation: str = "relu"
    initializer: str = "lecun_normal"

    @nn.compact
    def __call__(self, x, train):
        del train
        x = x.reshape((x.shape[0], -1))
        act, init = ACTIVATIONS[self.activation], INITIALIZERS[self.initializer]
        for width in self.hidden:
            x = act(nn.Dense(width, kernel_init=init)(x))
        return nn.Dense(self.out, kernel_init=init)(x)


class Linear(nn.Module):
    """One dense layer: logistic / softmax regression or linear regression."""

    out: int

    @nn.compact
    def __call__(self, x, train):
        del train
        return nn.Dense(self.out)(x.reshape((x.shape[0], -1)))
