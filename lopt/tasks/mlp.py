"""MLP classifiers on in-memory datasets: the MNIST-MLP optimizee of seed 001, on digits."""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from lopt.tasks import datasets
from lopt.tasks.base import Task, TaskFamily, fixed_family

ACTIVATIONS = {
    "sigmoid": jax.nn.sigmoid,
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "elu": jax.nn.elu,
    "gelu": jax.nn.gelu,
}


class MLP(nn.Module):
    hidden: Sequence[int]
    num_classes: int
    activation: str

    @nn.compact
    def __call__(self, x):
        x = x.reshape((x.shape[0], -1))
        act = ACTIVATIONS[self.activation]
        for width in self.hidden:
            x = act(nn.Dense(width)(x))
        return nn.Dense(self.num_classes)(x)


def mlp_classifier(
    dataset: str = "digits",
    hidden: Sequence[int] = (20,),
    activation: str = "sigmoid",
    batch_size: int = 128,
) -> Task:
    """Cross-entropy of an MLP; each ``loss`` call draws a minibatch (with replacement) from its key.

    ``eval_loss`` is the same loss on a minibatch of the held-out split. The default (20 hidden
    sigmoid units, batch 128) is the L2L MNIST optimizee of seed 001, on the digits data.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    if any(int(w) < 1 for w in hidden):
        raise ValueError(f"hidden must hold positive layer widths, got {tuple(hidden)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    data = datasets.load(dataset)
    model = MLP(hidden=tuple(int(w) for w in hidden), num_classes=data.num_classes,
                activation=activation)

    def init(key):
        return model.init(key, data.train_x[:1])["params"]

    def batch_loss(params, x, y, key):
        idx = jax.random.randint(key, (batch_size,), 0, x.shape[0])
        logits = model.apply({"params": params}, x[idx])
        return optax.softmax_cross_entropy_with_integer_labels(logits, y[idx]).mean()

    def loss(params, key):
        return batch_loss(params, data.train_x, data.train_y, key)

    def eval_loss(params, key):
        return batch_loss(params, data.test_x, data.test_y, key)

    return Task(init=init, loss=loss, eval_loss=eval_loss)


def mlp_family(**kwargs) -> TaskFamily:
    """The fixed-architecture MLP task as a family (empty cfg; instances differ in init and batches)."""
    hidden = kwargs.get("hidden", (20,))
    name = f"{kwargs.get('dataset', 'digits')}_mlp_" + "x".join(str(w) for w in hidden)
    return fixed_family(mlp_classifier(**kwargs), name=name)
