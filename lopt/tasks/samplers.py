"""TaskSet-style samplers (Sohl-Dickstein, Metz et al.): a seed draws a static,
hashable spec (architecture, activation, initializer, width and depth, dataset, batch size);
each spec builds one TaskFamily whose vmappable cfg varies the rest (init scale, data subset,
minibatches, seeds). Two levels because structure changes shapes and cannot be vmapped."""
from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Tuple

import numpy as np

from lopt.tasks import datasets
from lopt.tasks.autoencoder import autoencoder_family, vae_family
from lopt.tasks.base import TaskFamily
from lopt.tasks.bigger import mixer_family, resnet_family, vit_family
from lopt.tasks.conv import conv_family
from lopt.tasks.mlp import mlp_family
from lopt.tasks.mup import mup_mlp_family, mup_transformer_family
from lopt.tasks.quadratic import quadratic_family
from lopt.tasks.sequence import char_rnn_family, transformer_lm_family

INIT_SCALE = (0.5, 2.0)  # log-uniform per instance
SUBSET_FRACTION = 0.8  # each instance trains on its own random 80% of the train split


@dataclasses.dataclass(frozen=True)
class Spec:
    """A structural task spec: ``kind`` names the builder, ``fields`` its static arguments."""

    kind: str
    fields: Tuple[Tuple[str, object], ...]

    @property
    def name(self) -> str:
        def show(v):
            return "x".join(map(str, v)) if isinstance(v, tuple) else str(v)
        return f"{self.kind}(" + ",".join(f"{k}={show(v)}" for k, v in self.fields) + ")"

    def kwargs(self) -> dict:
        return dict(self.fields)

    def family(self) -> TaskFamily:
        return BUILDERS[self.kind](self)


@dataclasses.dataclass(frozen=True)
class Sampler:
    """``sample(seed) -> Spec``; ``choices`` declares every field's allowed values."""

    draw: Callable[[np.random.Generator], dict]
    description: str
    choices: Dict[str, tuple]
    kind: str

    def sample(self, seed: int) -> Spec:
        # The bound of every other seed (a jax PRNG seed); larger ones are typos.
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or \
                not 0 <= seed < 2**31:
            raise ValueError(f"sampler seed must be an integer in [0, 2**31); got {seed!r}")
        fields = self.draw(np.random.default_rng([int(seed), _tag(self.kind)]))
        return Spec(self.kind, tuple(fields.items()))


def _tag(kind: str) -> int:
    return sum(ord(c) * 31**i for i, c in enumerate(kind)) % (2**31)


def _pick(rng, options):
    return options[int(rng.integers(len(options)))]


def _layers(rng, depths, widths):
    return tuple(_pick(rng, widths) for _ in range(_pick(rng, depths)))


def _subset(dataset: str, **options) -> int:
    return int(SUBSET_FRACTION * datasets.load(dataset, **options).train_x.shape[0])


CHOICES = {
    "mlp": {"dataset": ("digits", "mnist_5k_8", "mnist_5k_14", "mnist1d", "wine",
                        "breast_cancer", "gaussian_clusters"),
            "depth": (1, 2, 3, 4), "width": (8, 16, 32, 64),
            "activation": ("sigmoid", "relu", "tanh", "elu", "gelu"),
            "initializer": ("lecun_normal", "he_normal", "glorot_uniform", "normal_0.1"),
            "batch_size": (32, 64, 128)},
    "conv_pool": {"dataset": ("digits", "mnist_5k_14", "shapes_8", "shapes_16"),
                  "depth": (1, 2, 3), "width": (4, 8, 16),
                  "activation": ("relu", "elu", "tanh", "gelu"), "pool": ("max", "avg"),
                  "batch_norm": (False, True), "batch_size": (32, 64)},
    "conv_fc": {"dataset": ("digits", "mnist_5k_14", "shapes_8", "shapes_16"),
                "depth": (1, 2), "width": (4, 8, 16), "fc": (16, 32, 64),
                "activation": ("relu", "elu", "tanh", "gelu"), "batch_norm": (False, True),
                "batch_size": (32, 64)},
    "char_rnn": {"cell": ("lstm", "gru", "vanilla"), "hidden": (16, 32, 64),
                 "embed": (8, 16, 32), "seq_len": (16, 32), "batch_size": (16, 32)},
    "transformer": {"layers": (1, 2), "d_model": (16, 32, 64), "heads": (1, 2, 4),
                    "seq_len": (16, 32), "batch_size": (16, 32)},
    "autoencoder": {"dataset": ("digits", "mnist_5k_8", "mnist_5k_14", "shapes_8"),
                    "depth": (1, 2, 3), "width": (8, 16, 32, 64),
                    "activation": ("relu", "elu", "tanh", "sigmoid"), "batch_size": (32, 64)},
    "vae": {"dataset": ("digits", "mnist_5k_8", "mnist_5k_14", "shapes_8"),
            "depth": (1, 2), "width": (16, 32, 64), "latent": (2, 4, 8, 16),
            "activation": ("relu", "elu", "tanh"), "batch_size": (32, 64)},
    "quadratic": {"dim": (4, 8, 10, 16, 32), "nonlinearity": ("none", "tanh", "softplus"),
                  "condition": (0.0, 1.0, 2.0, 3.0)},
    # μP families: width is the axis (a μP rule meta-trained at one width is tested at others).
    "mup_mlp": {"dataset": ("digits", "mnist_5k_8", "mnist_5k_14", "mnist1d"),
                "width": (32, 64, 128, 256, 512, 1024, 2048, 4096), "depth": (2, 3),
                "activation": ("relu", "gelu", "tanh"), "batch_size": (64, 128)},
    "mup_transformer": {"width": (32, 64, 128, 256, 512, 1024), "layers": (1, 2),
                        "heads": (1, 2, 4), "seq_len": (16, 32), "batch_size": (16, 32)},
    # Bigger models than any meta-training family (lopt.tasks.bigger).
    "resnet": {"dataset": ("mnist_5k", "shapes_16"), "widths": (8, 16, 32, 64),
               "blocks": (1, 2, 3), "batch_size": (32, 64)},
    "vit": {"dataset": ("mnist_5k", "shapes_16"), "patch": (4,), "width": (32, 64, 128),
            "depth": (2, 4, 6), "heads": (2, 4), "batch_size": (32, 64)},
    "mixer": {"dataset": ("mnist_5k", "shapes_16"), "patch": (4,), "width": (32, 64, 128),
              "depth": (2, 4, 6), "token_hidden": (32, 64), "channel_hidden": (64, 128, 256),
              "batch_size": (32, 64)},
    "transformer_big": {"layers": (3, 4), "d_model": (32, 64, 128), "heads": (2, 4),
                        "seq_len": (32, 64), "batch_size": (16, 32)},
}


def _draw_mlp(rng):
    c = CHOICES["mlp"]
    return {"dataset": _pick(rng, c["dataset"]), "hidden": _layers(rng, c["depth"], c["width"]),
            "activation": _pick(rng, c["activation"]),
            "initializer": _pick(rng, c["initializer"]), "batch_size": _pick(rng, c["batch_size"])}


def _draw_conv(kind):
    def draw(rng):
        c = CHOICES[kind]
        fields = {"dataset": _pick(rng, c["dataset"]),
                  "channels": _layers(rng, c["depth"], c["width"]),
                  "activation": _pick(rng, c["activation"])}
        if kind == "conv_pool":
            fields["pool"] = _pick(rng, c["pool"])
        else:
            fields["fc"] = (_pick(rng, c["fc"]),)
        fields["batch_norm"] = _pick(rng, c["batch_norm"])
        fields["batch_size"] = _pick(rng, c["batch_size"])
        return fields
    return draw


def _draw_flat(kind):
    def draw(rng):
        return {k: _pick(rng, v) for k, v in CHOICES[kind].items()}
    return draw


def _draw_transformer(rng):
    fields = _draw_flat("transformer")(rng)
    if fields["d_model"] % fields["heads"]:
        fields["heads"] = 1
    return fields


def _draw_autoencoder(rng):
    c = CHOICES["autoencoder"]
    widths = sorted(_layers(rng, c["depth"], c["width"]), reverse=True)  # a funnel
    return {"dataset": _pick(rng, c["dataset"]), "hidden": tuple(widths),
            "activation": _pick(rng, c["activation"]), "batch_size": _pick(rng, c["batch_size"])}


def _draw_vae(rng):
    c = CHOICES["vae"]
    return {"dataset": _pick(rng, c["dataset"]), "hidden": _layers(rng, c["depth"], c["width"]),
            "latent": _pick(rng, c["latent"]), "activation": _pick(rng, c["activation"]),
            "batch_size": _pick(rng, c["batch_size"])}


def _draw_resnet(rng):
    c = CHOICES["resnet"]
    base, stages = _pick(rng, (8, 16)), _pick(rng, (2, 3))  # channels double per stage
    return {"dataset": _pick(rng, c["dataset"]), "widths": tuple(base * 2**i for i in
                                                                  range(stages)),
            "blocks": _pick(rng, c["blocks"]), "batch_size": _pick(rng, c["batch_size"])}


def _classifier_extra(spec):
    return {"subset_size": _subset(spec.kwargs()["dataset"]), "init_scale": INIT_SCALE,
            "name": spec.name}


BUILDERS = {
    "mlp": lambda s: mlp_family(**s.kwargs(), **_classifier_extra(s)),
    "conv_pool": lambda s: conv_family(head="pool", **s.kwargs(), **_classifier_extra(s)),
    "conv_fc": lambda s: conv_family(head="fc", **s.kwargs(), **_classifier_extra(s)),
    "char_rnn": lambda s: char_rnn_family(**s.kwargs(), init_scale=INIT_SCALE, name=s.name),
    "transformer": lambda s: transformer_lm_family(**s.kwargs(), init_scale=INIT_SCALE,
                                                   name=s.name),
    "autoencoder": lambda s: autoencoder_family(**s.kwargs(), init_scale=INIT_SCALE,
                                                name=s.name),
    "vae": lambda s: vae_family(**s.kwargs(), init_scale=INIT_SCALE, name=s.name),
    "quadratic": lambda s: quadratic_family(**s.kwargs()),
    "mup_mlp": lambda s: mup_mlp_family(**s.kwargs(), subset_size=_subset(s.kwargs()["dataset"]),
                                        name=s.name),
    "mup_transformer": lambda s: mup_transformer_family(
        **s.kwargs(), subset_size=_subset("pysource", seq_len=s.kwargs()["seq_len"]), name=s.name),
    "resnet": lambda s: resnet_family(**s.kwargs(), name=s.name),
    "vit": lambda s: vit_family(**s.kwargs(), name=s.name),
    "mixer": lambda s: mixer_family(**s.kwargs(), name=s.name),
    "transformer_big": lambda s: transformer_lm_family(**s.kwargs(), init_scale=INIT_SCALE,
                                                       name=s.name, dataset="pydocs"),
}

SAMPLERS = {
    "mlp": Sampler(_draw_mlp, "MLP classifiers: dataset, 1-4 layers of 8-64 units, 5 "
                   "activations, 4 initializers, batch 32-128", CHOICES["mlp"], "mlp"),
    "conv_pool": Sampler(_draw_conv("conv_pool"), "conv + pooling nets, global-average head: "
                         "image dataset, 1-3 layers of 4-16 channels, max/avg pool, optional "
                         "batch norm", CHOICES["conv_pool"], "conv_pool"),
    "conv_fc": Sampler(_draw_conv("conv_fc"), "conv nets with an FC head: 1-2 conv layers, "
                       "16-64 FC units, optional batch norm", CHOICES["conv_fc"], "conv_fc"),
    "char_rnn": Sampler(_draw_flat("char_rnn"), "character RNN language models: LSTM/GRU/"
                        "vanilla cell, 16-64 units, windows 16-32", CHOICES["char_rnn"],
                        "char_rnn"),
    "transformer": Sampler(_draw_transformer, "causal transformer language models: 1-2 "
                           "layers, width 16-64, 1-4 heads", CHOICES["transformer"],
                           "transformer"),
    "autoencoder": Sampler(_draw_autoencoder, "MLP autoencoders on images: 1-3 funnel layers, "
                           "4 activations", CHOICES["autoencoder"], "autoencoder"),
    "vae": Sampler(_draw_vae, "VAEs on images: 1-2 layers, latent 2-16, 3 activations",
                   CHOICES["vae"], "vae"),
    "quadratic": Sampler(_draw_flat("quadratic"), "quadratics: dim 4-32, identity/tanh/"
                         "softplus output, 0-3 decades of conditioning", CHOICES["quadratic"],
                         "quadratic"),
    "mup_mlp": Sampler(_draw_flat("mup_mlp"), "μP MLP classifiers (lopt.tasks.mup), width the "
                       "axis: 2-3 layers of 32-4096 units, 4 image datasets",
                       CHOICES["mup_mlp"], "mup_mlp"),
    "mup_transformer": Sampler(_draw_flat("mup_transformer"), "μP causal transformer LMs, "
                               "width the axis: 32-1024, 1-2 layers, 1-4 heads",
                               CHOICES["mup_transformer"], "mup_transformer"),
    "resnet": Sampler(_draw_resnet, "pre-activation ResNets with group norm on 28x28 "
                      "MNIST or 16x16 shapes: 2-3 stages of 8-64 channels, 1-3 blocks each",
                      CHOICES["resnet"], "resnet"),
    "vit": Sampler(_draw_flat("vit"), "small Vision Transformers: 4x4 patches, width 32-128, "
                   "2-6 blocks, 2-4 heads", CHOICES["vit"], "vit"),
    "mixer": Sampler(_draw_flat("mixer"), "MLP-Mixers: 4x4 patches, width 32-128, 2-6 blocks",
                     CHOICES["mixer"], "mixer"),
    "transformer_big": Sampler(_draw_flat("transformer_big"), "3-4 layer causal transformer "
                               "LMs on pydocs: width 32-128, 2-4 heads, windows 32-64",
                               CHOICES["transformer_big"], "transformer_big"),
}


def sample_spec(sampler: str, seed: int) -> Spec:
    """The spec that ``sampler`` draws from ``seed``."""
    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}; got {sampler!r}")
    return SAMPLERS[sampler].sample(seed)
