"""Tasks, task families, datasets, samplers, mixtures and normalization (DESIGN.md: Task,
TaskFamily, Data and splits)."""
from lopt.tasks import datasets, threefry_lowering
from lopt.tasks.augment import (
                                gradient_noise,
                                label_noise,
                                random_scaling,
                                reduced_batch,
                                reparameterize,
                                with_convex,
)
from lopt.tasks.autoencoder import autoencoder_family, vae_family
from lopt.tasks.base import Task, TaskFamily, fixed_family, map_params, pooled_family
from lopt.tasks.conv import conv_family
from lopt.tasks.mixture import Mixture
from lopt.tasks.mlp import linear_family, mlp_classifier, mlp_family
from lopt.tasks.mup import mup_mlp_family, mup_transformer_family
from lopt.tasks.normalize import AdamReference, normalized
from lopt.tasks.quadratic import quadratic_family
from lopt.tasks.registry import BIGGER, FAMILIES, MIXTURES, WIDTH_FAMILIES, make_family, resolve
from lopt.tasks.samplers import SAMPLERS, Spec, sample_spec
from lopt.tasks.sequence import char_rnn_family, sine_lstm_family, transformer_lm_family
from lopt.tasks.supervised import Model, supervised_family
from lopt.tasks.synthetic import (
                                function_family,
                                log_sum_exp_family,
                                rosenbrock_family,
                                sparse_softmax_family,
)

threefry_lowering.enable_unless_opted_out()

__all__ = ["Task", "TaskFamily", "fixed_family", "map_params", "pooled_family", "Mixture",
           "datasets",
           "random_scaling", "reparameterize", "with_convex", "reduced_batch", "label_noise",
           "gradient_noise", "mlp_classifier", "mlp_family", "mup_mlp_family",
           "mup_transformer_family", "linear_family", "conv_family",
           "sine_lstm_family", "char_rnn_family", "transformer_lm_family", "autoencoder_family",
           "vae_family", "quadratic_family", "rosenbrock_family", "function_family",
           "log_sum_exp_family", "sparse_softmax_family", "Model", "supervised_family",
           "SAMPLERS", "Spec", "sample_spec", "AdamReference", "normalized",
           "BIGGER", "FAMILIES", "MIXTURES", "WIDTH_FAMILIES", "make_family", "resolve"]
