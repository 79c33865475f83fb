"""An MLP autoencoder and a variational autoencoder (Kingma & Welling 2014) on image data."""
from __future__ import annotations

from typing import Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from lopt.tasks import datasets
from lopt.tasks.base import TaskFamily
from lopt.tasks.models import (
    ACTIVATIONS,
    check_choice,
    check_widths,
    linen_model,
    negative_elbo,
    pixel_bce,
)
from lopt.tasks.supervised import supervised_family


def _flat(x):
    return x.reshape((x.shape[0], -1))


class Autoencoder(nn.Module):
    """Encoder widths ``hidden``, the decoder mirrors them; outputs per-pixel logits."""

    hidden: Sequence[int]
    activation: str = "relu"

    @nn.compact
    def __call__(self, x, train):
        del train
        h, act = _flat(x), ACTIVATIONS[self.activation]
        for width in tuple(self.hidden) + tuple(reversed(self.hidden[:-1])):
            h = act(nn.Dense(width)(h))
        return nn.Dense(_flat(x).shape[-1])(h)


class VAE(nn.Module):
    """Gaussian encoder q(z|x) = N(μ, σ²) over ``latent`` dimensions, Bernoulli decoder;
    returns (pixel logits, KL(q ‖ N(0, I))) with z = μ + σ ε drawn from the ``sample`` rng."""

    hidden: Sequence[int]
    latent: int = 8
    activation: str = "relu"

    @nn.compact
    def __call__(self, x, train):
        del train
        h, act = _flat(x), ACTIVATIONS[self.activation]
        for width in self.hidden:
            h = act(nn.Dense(width)(h))
        mean, log_var = nn.Dense(self.latent)(h), nn.Dense(self.latent)(h)
        eps = jax.random.normal(self.make_rng("sample"), mean.shape, mean.dtype)
        z = mean + jnp.exp(0.5 * log_var) * eps
        for width in reversed(self.hidden):
            z = act(nn.Dense(width)(z))
        kl = 0.5 * jnp.sum(jnp.exp(log_var) + mean**2 - 1.0 - log_var, axis=-1)
        return nn.Dense(_flat(x).shape[-1])(z), kl


def _image_data(dataset):
    data = datasets.load(dataset)
    if data.kind != "classification" or float(data.train_x.min()) < 0 or \
            float(data.train_x.max()) > 1.5:
        raise ValueError(f"dataset must be an image dataset with pixels in [0, 1]; "
                         f"{dataset!r} is not")
    return data


def autoencoder_family(dataset: str = "digits", hidden: Sequence[int] = (32, 8),
                       activation: str = "relu", batch_size: int = 64,
                       init_scale=(1.0, 1.0), name: Optional[str] = None) -> TaskFamily:
    """Per-pixel Bernoulli reconstruction loss of an MLP autoencoder."""
    check_choice("activation", activation, ACTIVATIONS)
    hidden = check_widths("hidden", hidden)
    model = linen_model(Autoencoder(hidden=hidden, activation=activation), pixel_bce)
    name = name or f"{dataset}_autoencoder_" + "x".join(map(str, hidden)) + f"_{activation}"
    return supervised_family(name, _image_data(dataset), model, batch_size=batch_size,
                             init_scale=init_scale)


def vae_family(dataset: str = "digits", hidden: Sequence[int] = (32,), latent: int = 8,
               activation: str = "relu", batch_size: int = 64,
               init_scale=(1.0, 1.0), name: Optional[str] = None) -> TaskFamily:
    """The negative ELBO per pixel of a VAE (one sample of z per example and step)."""
    check_choice("activation", activation, ACTIVATIONS)
    hidden = check_widths("hidden", hidden)
    if not 1 <= int(latent) <= 256:
        raise ValueError(f"latent must be between 1 and 256; got {latent!r}")
    model = linen_model(VAE(hidden=hidden, latent=int(latent), activation=activation),
                        negative_elbo)
    name = name or f"{dataset}_vae_" + "x".join(map(str, hidden)) + f"_z{latent}_{activation}"
    return supervised_family(name, _image_data(dataset), model, batch_size=batch_size,
                             init_scale=init_scale)
