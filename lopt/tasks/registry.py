"""Task names the CLI accepts: registered tasks, sampled specs (``SAMPLER@SEED``) and
mixtures (``mixture:NAME`` or ``mixture:A+B+C`` of either)."""
from __future__ import annotations

import functools
import re

from lopt.tasks import augment
from lopt.tasks.autoencoder import autoencoder_family, vae_family
from lopt.tasks.bigger import mixer_family, resnet_family, vit_family
from lopt.tasks.conv import conv1d_family, conv_family
from lopt.tasks.mixture import Mixture
from lopt.tasks.mlp import linear_family, mlp_family
from lopt.tasks.mup import MAX_WIDTH, mup_mlp_family, mup_transformer_family
from lopt.tasks.quadratic import quadratic_family
from lopt.tasks.samplers import SAMPLERS, sample_spec
from lopt.tasks.sequence import char_rnn_family, sine_lstm_family, transformer_lm_family
from lopt.tasks.synthetic import (
    FUNCTIONS,
    function_family,
    log_sum_exp_family,
    rosenbrock_family,
    sparse_softmax_family,
)
from lopt.tasks.tensor_parallel import tensor_parallel

P = functools.partial

FAMILIES = {
    "quadratic": (quadratic_family, "random 10x10 least squares ‖Wθ − y‖² (L2L, Andrychowicz et "
                                    "al. 2016)"),
    "quadratic_augmented": (lambda: augment.with_convex(augment.random_scaling(
        quadratic_family())), "quadratics with RNNprop's random scaling and an added random "
                              "convex function (Wang, Sun & Xu 2019)"),
    "quadratic_tanh": (P(quadratic_family, nonlinearity="tanh", condition=1.0),
                       "‖tanh(Wθ) − y‖² with one decade of conditioning"),
    "digits_mlp": (P(mlp_family, name="digits_mlp_20"),
                   "MLP (20 sigmoid units) on the 8x8 digits, minibatch 128 (Andrychowicz et al. "
                   "2016)"),
    "digits_mlp_deep": (P(mlp_family, hidden=(20,) * 9, activation="relu"),
                        "9-hidden-layer ReLU MLP on digits (Wang, Sun & Xu 2019's depth "
                        "generalization)"),
    "digits_mlp_augmented": (lambda: augment.label_noise(augment.reduced_batch(
        augment.reparameterize(mlp_family(hidden=(32,), activation="relu")), 16), 0.0, 0.2),
        "ReLU MLP on digits with per-tensor reparameterization, reduced batches, label noise"),
    "mnist_mlp": (P(mlp_family, dataset="mnist_5k_14", hidden=(32,), activation="relu"),
                  "MLP (32 ReLU) on real MNIST digits at 14x14 (mnist_5k)"),
    "mnist1d_mlp": (P(mlp_family, dataset="mnist1d", hidden=(64, 64), activation="relu"),
                    "2x64 ReLU MLP on MNIST-1D"),
    "digits_conv": (P(conv_family, dataset="digits", channels=(8, 16)),
                    "conv + max-pool (8, 16 channels), global-average head, on digits"),
    "digits_conv_bn": (P(conv_family, dataset="digits", channels=(8, 16), batch_norm=True),
                       "digits_conv with batch norm (running statistics as task state)"),
    "mnist_conv_fc": (P(conv_family, dataset="mnist_5k_14", channels=(8, 16), head="fc",
                        fc=(32,)), "conv (8, 16) + FC 32 on mnist_5k 14x14"),
    "mnist1d_conv": (conv1d_family,
                     "1-D conv net (3 x 16 channels, width 5, stride 2) on MNIST-1D"),
    "digits_mlp_wide": (P(mlp_family, hidden=(320,), activation="relu"),
                        "ReLU MLP with 320 hidden units on digits (10x the recipes' width)"),
    "digits_mlp_3x32": (P(mlp_family, hidden=(32, 32, 32), activation="relu"),
                        "ReLU MLP 3 x 32 on digits (3x the recipes' depth)"),
    "breast_cancer_mlp": (P(mlp_family, dataset="breast_cancer", hidden=(32,),
                            activation="relu", batch_size=64),
                          "ReLU MLP (32) on the breast_cancer table"),
    "shapes_conv": (P(conv_family, dataset="shapes_16", channels=(8, 8)),
                    "conv + pool on the generated 16x16 shapes"),
    "cifar10_conv": (P(conv_family, dataset="cifar10", channels=(16, 32), batch_size=64),
                     "conv + pool on CIFAR-10 (tfds; needs prepared data)"),
    "fashion_mnist_mlp": (P(mlp_family, dataset="fashion_mnist", hidden=(64,),
                            activation="relu"), "MLP on Fashion-MNIST (tfds; needs prepared data)"),
    "sine_lstm": (sine_lstm_family, "LSTM-20 sequence prediction of noisy sines (Wang, Sun & Xu "
                                    "2019 "
                                    "Table 2, baseline)"),
    "sine_lstm_small_noise": (P(sine_lstm_family, noise="small"),
                              "sine_lstm with noise 0.01 (Table 2, small noise)"),
    "sine_lstm_2layer": (P(sine_lstm_family, layers=2), "2-layer LSTM sine prediction "
                                                        "(Table 2, 2-layer)"),
    "char_rnn": (char_rnn_family, "character LSTM language model (32 units) on pysource"),
    "transformer_lm": (transformer_lm_family, "1-layer causal transformer (width 32, 2 heads) "
                                              "character LM on pysource"),
    "digits_autoencoder": (autoencoder_family, "MLP autoencoder 64-32-8-32-64 on digits"),
    "digits_vae": (vae_family, "VAE (32 hidden, 8 latent) on digits, -ELBO per pixel"),
    "iris_logistic": (P(linear_family, "iris"), "softmax regression on iris"),
    "wine_logistic": (P(linear_family, "wine"), "softmax regression on wine"),
    "breast_cancer_logistic": (P(linear_family, "breast_cancer"),
                               "logistic regression on breast_cancer"),
    "diabetes_linear": (P(linear_family, "diabetes"), "least-squares linear regression on "
                                                      "diabetes"),
    "rosenbrock": (rosenbrock_family, "Rosenbrock's valley in 2-d, random scale"),
    **{name: (P(function_family, name), f"{desc}, random scale (Wichrowska et al. 2017)")
       for name, (_, _, _, _, desc) in FUNCTIONS.items() if name != "rosenbrock"},
    "log_sum_exp": (log_sum_exp_family, "log Σ exp(Ax + b) + 0.01‖x‖² (Wichrowska et al. 2017)"),
    "sparse_softmax": (sparse_softmax_family, "softmax regression on sparse inputs "
                                              "(Wichrowska et al. 2017)"),
    "rosenbrock_noisy": (lambda: augment.gradient_noise(rosenbrock_family(), 1.0),
                         "Rosenbrock with N(0, 1) gradient noise (Wichrowska et al. 2017)"),
    # The tiny meta-training set of the `celo_tiny` / `adafac_tiny` recipes
    # (lopt/pretrained/recipes.py):
    # 8x8 and 14x14 image MLPs and a small conv net, each under a global reparameterization.
    "digits_mlp_reparam": (lambda: augment.reparameterize(
        mlp_family(hidden=(32,), activation="relu"), "global"),
        "ReLU MLP (32) on digits 8x8, parameters globally reparameterized over 3 decades"),
    "mnist8_mlp_reparam": (lambda: augment.reparameterize(
        mlp_family(dataset="mnist_5k_8", hidden=(32,), activation="relu"), "global"),
        "ReLU MLP (32) on MNIST at 8x8, globally reparameterized"),
    "mnist14_mlp_reparam": (lambda: augment.reparameterize(
        mlp_family(dataset="mnist_5k_14", hidden=(32,), activation="relu"), "global"),
        "ReLU MLP (32) on MNIST at 14x14, globally reparameterized"),
    "digits_conv_reparam": (lambda: augment.reparameterize(
        conv_family(dataset="digits", channels=(8, 16)), "global"),
        "conv + pool (8, 16) on digits, globally reparameterized"),
    # The `celo2_broad` recipe's meta-training set (mixture:broad): seven kinds of task on data
    # no meta-test task uses (generated shapes, real photo patches, Friedman's regression, the
    # wine table, English prose), every model at most 32 wide, each globally reparameterized.
    "shapes8_mlp_reparam": (lambda: augment.reparameterize(
        mlp_family(dataset="shapes_8", hidden=(32,), activation="relu"), "global"),
        "ReLU MLP (32) on the generated 8x8 shapes, globally reparameterized"),
    "shapes16_conv_reparam": (lambda: augment.reparameterize(
        conv_family(dataset="shapes_16", channels=(8, 16)), "global"),
        "conv + pool (8, 16) on the generated 16x16 shapes, globally reparameterized"),
    "photo_autoencoder_reparam": (lambda: augment.reparameterize(
        autoencoder_family("photo_patches", hidden=(32, 8)), "global"),
        "MLP autoencoder 64-32-8-32-64 on 8x8 photo patches, globally reparameterized"),
    "friedman_mlp_reparam": (lambda: augment.reparameterize(
        mlp_family(dataset="friedman", hidden=(32,), activation="relu", batch_size=64),
        "global"), "ReLU MLP (32) regression on Friedman #1, globally reparameterized"),
    "wine_mlp_reparam": (lambda: augment.reparameterize(
        mlp_family(dataset="wine", hidden=(32,), activation="relu", batch_size=32), "global"),
        "ReLU MLP (32) on the wine table, globally reparameterized"),
    "pydocs_char_rnn_reparam": (lambda: augment.reparameterize(
        char_rnn_family(dataset="pydocs", hidden=32, seq_len=16, batch_size=16), "global"),
        "character LSTM (32) on pydocs prose, 16-character windows, globally reparameterized"),
    "pydocs_transformer_reparam": (lambda: augment.reparameterize(
        transformer_lm_family(dataset="pydocs", d_model=16, seq_len=16, batch_size=16),
        "global"), "1-layer causal transformer (width 16, 2 heads) on pydocs prose, "
                   "globally reparameterized"),
    # What broke celo2_broad as a drop-in (issue 35), added for the `celo2_graft` recipe's
    # mixture:robust, on the same data as mixture:broad (none a meta-test task reads): deep
    # and wide ReLU MLPs, a regression at a loss scale of 10^3 and a classification at 10^-2,
    # a 2-layer transformer.
    "friedman_mlp_deep_x1e3": (lambda: augment.reparameterize(augment.loss_scale(
        mlp_family(dataset="friedman", hidden=(128, 128, 128), activation="relu",
                   batch_size=64), 1e3), "global"),
        "ReLU MLP 3 x 128 regression on Friedman #1, loss x 1000, globally reparameterized"),
    "shapes16_mlp_wide": (lambda: augment.reparameterize(
        mlp_family(dataset="shapes_16", hidden=(256,), activation="relu"), "global"),
        "ReLU MLP (256) on the generated 16x16 shapes, globally reparameterized"),
    "photo_mlp_tanh_x1e-2": (lambda: augment.reparameterize(augment.loss_scale(
        mlp_family(dataset="photo_patches", hidden=(64, 64), activation="tanh",
                   batch_size=64), 1e-2), "global"),
        "tanh MLP 2 x 64 telling the two photos' 8x8 patches apart, loss x 0.01, globally "
        "reparameterized"),
    "pydocs_transformer_2l": (lambda: augment.reparameterize(
        transformer_lm_family(layers=2, dataset="pydocs", d_model=32, seq_len=16,
                              batch_size=16), "global"),
        "2-layer causal transformer (width 32, 2 heads) on pydocs prose, globally "
        "reparameterized"),
    # Meta-test tasks (lopt bench pretrained) beside the nine above.
    "diabetes_mlp": (P(mlp_family, dataset="diabetes", hidden=(32,), activation="relu",
                       batch_size=64), "ReLU MLP (32) regression on the diabetes table"),
    "mnist_mlp_wide": (P(mlp_family, dataset="mnist_5k_14", hidden=(320,), activation="relu"),
                       "ReLU MLP with 320 hidden units on MNIST 14x14 (10x the widest "
                       "meta-training model)"),
    # Issue 35's meta-test rows: what broke celo2_broad as a drop-in, on meta-test data.
    "diabetes_mlp_deep_wide": (P(mlp_family, dataset="diabetes", hidden=(256, 256, 256),
                                 activation="relu", batch_size=64),
                               "ReLU MLP 3 x 256 regression on the diabetes table"),
    "breast_cancer_mlp_wide": (P(mlp_family, dataset="breast_cancer", hidden=(256, 256),
                                 activation="relu", batch_size=64),
                               "ReLU MLP 2 x 256 on the breast_cancer table"),
    "diabetes_mlp_loss_x1e4": (lambda: augment.loss_scale(mlp_family(
        dataset="diabetes", hidden=(32,), activation="relu", batch_size=64), 1e4),
        "diabetes_mlp with its loss times 10^4"),
    "digits_mlp_loss_x1e-3": (lambda: augment.loss_scale(mlp_family(
        hidden=(32, 32, 32), activation="relu"), 1e-3),
        "ReLU MLP 3 x 32 on digits with its loss times 10^-3"),
    "digits_vit": (P(vit_family, "digits", patch=2, width=32, depth=2, heads=2),
                   "ViT (2x2 patches, 16 tokens, width 32, 2 blocks, 2 heads) on the 8x8 digits"),
    # Bigger than anything in meta-training (lopt.tasks.bigger).
    "mnist_resnet": (P(resnet_family, "mnist_5k", widths=(16, 32, 64), blocks=2),
                     "pre-activation ResNet (3 stages of 16/32/64 channels, 2 blocks, group "
                     "norm) on 28x28 MNIST"),
    "mnist_vit": (P(vit_family, "mnist_5k", patch=4, width=64, depth=4, heads=4),
                  "ViT (4x4 patches, width 64, 4 blocks, 4 heads) on 28x28 MNIST"),
    "mnist_mixer": (P(mixer_family, "mnist_5k", patch=4, width=64, depth=4),
                    "MLP-Mixer (4x4 patches, width 64, 4 blocks) on 28x28 MNIST"),
    "pydocs_transformer_4l": (P(transformer_lm_family, layers=4, d_model=64, heads=4,
                                seq_len=64, batch_size=16, dataset="pydocs"),
                              "4-layer causal transformer LM (width 64, 4 heads, window 64) "
                              "on pydocs prose"),
    # The meta-test's bigger rows (lopt bench pretrained), sized so that each costs this 2-core
    # CPU about an hour there (10-18 ms an instance step with Adam): 78k-229k parameters, 7-21x
    # mixture:broad's largest model (the 10.9k-parameter character LSTM); the 4-layer LM reads
    # pysource, which no meta-training set does.
    "mnist14_resnet": (P(resnet_family, "mnist_5k_14", widths=(16, 32, 64), blocks=1),
                       "pre-activation ResNet (3 stages of 16/32/64 channels, 1 block each, "
                       "group norm) on MNIST 14x14"),
    "mnist_vit_p7": (P(vit_family, "mnist_5k", patch=7, width=64, depth=4, heads=4),
                     "ViT (7x7 patches, 16 tokens, width 64, 4 blocks, 4 heads) on 28x28 MNIST"),
    "pysource_transformer_4l": (P(transformer_lm_family, layers=4, d_model=64, heads=4,
                                  seq_len=32, batch_size=16, dataset="pysource"),
                                "4-layer causal transformer LM (width 64, 4 heads, window 32) "
                                "on pysource"),
    "cifar10_resnet": (P(resnet_family, "cifar10", widths=(16, 32, 64), blocks=2),
                       "the ResNet on CIFAR-10 (tfds; needs prepared data)"),
}

# The registered tasks bigger than anything in meta-training (lopt.tasks.bigger), the first
# four at full size (`lopt bench accelerator` times a training step of each), then the
# meta-test's rows (tuned Adam in `lopt bench pretrained`; timed by `accelerator --quick`).
BIGGER = ("mnist_resnet", "mnist_vit", "mnist_mixer", "pydocs_transformer_4l", "mnist14_resnet",
          "mnist_vit_p7", "pysource_transformer_4l", "cifar10_resnet")

# μP families named with their width, ``NAME_wWIDTH`` (``mup_mlp_w64``): width is their
# transfer axis, so it is the one structural field a name sets. Their μP base width is 64
# (``lopt.tasks.mup.BASE_WIDTH``): at width 64 they train as standard models do.
WIDTH_FAMILIES = {
    "mup_mlp": (P(mup_mlp_family, "mnist_5k_14"),
                "μP MLP (2 ReLU layers of WIDTH) on MNIST 14x14 (μLO's task)"),
    "mup_transformer": (mup_transformer_family,
                        "μP causal transformer (1 layer, width WIDTH, 2 heads) character LM on "
                        "pysource"),
}
_WIDTH_NAME = re.compile(r"^([a-z_]+)_w([0-9]+)$")

MIXTURES = {
    "small": (("digits_mlp", "digits_conv", "char_rnn"),
              "an MLP, a conv net and a character LSTM"),
    "classic": (("quadratic", "digits_mlp", "sine_lstm", "rosenbrock"),
                "the classic problems of the papers: quadratic, MLP, LSTM sines, Rosenbrock"),
    "tiny_images": (("digits_mlp_reparam", "mnist8_mlp_reparam", "mnist14_mlp_reparam",
                     "digits_conv_reparam"), "the recipes' meta-training set: three image MLPs "
                                             "and a conv net, globally reparameterized"),
    "broad": (("shapes8_mlp_reparam", "shapes16_conv_reparam", "photo_autoencoder_reparam",
               "friedman_mlp_reparam", "wine_mlp_reparam", "pydocs_char_rnn_reparam",
               "pydocs_transformer_reparam"),
              "the celo2_broad recipe's meta-training set: an image MLP and conv net, an "
              "autoencoder, a regression and a tabular MLP, a character LSTM and a tiny "
              "transformer, on data no meta-test task uses, globally reparameterized"),
    "robust": (("shapes8_mlp_reparam", "shapes16_conv_reparam", "photo_autoencoder_reparam",
                "friedman_mlp_reparam", "wine_mlp_reparam", "pydocs_char_rnn_reparam",
                "pydocs_transformer_reparam", "friedman_mlp_deep_x1e3", "shapes16_mlp_wide",
                "photo_mlp_tanh_x1e-2", "pydocs_transformer_2l"),
               "the celo2_graft recipe's meta-training set: mixture:broad and what broke "
               "celo2_broad as a drop-in (a deep MLP regression at loss scale 10^3, a 256-wide "
               "MLP, a tanh MLP at loss scale 10^-2, a 2-layer transformer), same data"),
    "taskset": (("mlp@0", "conv_pool@0", "char_rnn@0", "transformer@0", "autoencoder@0",
                 "vae@0"), "one sampled spec from each of six TaskSet-style samplers"),
}


def _one(token: str):
    if token.endswith("_tp") and token not in FAMILIES and token[:-3]:
        inner_tp = _one(token[:-3])
        return lambda: tensor_parallel(inner_tp())
    for suffix in augment.PRECISIONS:
        base = token[:-len(suffix) - 1]
        if token.endswith("_" + suffix) and token not in FAMILIES and base:
            inner = _one(base)
            return lambda: augment.low_precision(inner(), suffix)
    if "@" in token:
        sampler, _, seed = token.partition("@")
        if sampler not in SAMPLERS:
            raise ValueError(f"task sampler must be one of {', '.join(SAMPLERS)}; got {sampler!r}")
        if not seed.isdigit() or int(seed) >= 2**31:
            raise ValueError(f"task {token!r}: the seed after '@' must be an integer in "
                             "[0, 2**31)")
        return lambda: sample_spec(sampler, int(seed)).family()
    match = _WIDTH_NAME.match(token)
    if match and match.group(1) in WIDTH_FAMILIES and token not in FAMILIES:
        width = int(match.group(2))
        if not 8 <= width <= MAX_WIDTH:
            raise ValueError(f"task {token!r}: the width after '_w' must be between 8 and "
                             f"{MAX_WIDTH}; got {width}")
        return lambda: WIDTH_FAMILIES[match.group(1)][0](width=width)
    if token not in FAMILIES:
        raise ValueError(f"task must be one of {', '.join(FAMILIES)}, NAME_wWIDTH (μP: "
                         f"{', '.join(WIDTH_FAMILIES)}), SAMPLER@SEED (samplers: "
                         f"{', '.join(SAMPLERS)}), any of these + _bf16 (low precision) or + _tp "
                         f"(tensor-parallel), or mixture:NAME; got {token!r}")
    return FAMILIES[token][0]


def resolve(name: str):
    """A zero-argument builder of the family or Mixture named ``name``; bad names raise a
    one-line ValueError without loading anything."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"task must be a non-empty name; got {name!r}")
    if not name.startswith("mixture:"):
        return _one(name)
    body = name[len("mixture:"):]
    if body in MIXTURES:
        tokens = MIXTURES[body][0]
    elif "+" in body:
        tokens = tuple(t for t in body.split("+"))
    else:
        raise ValueError(f"mixture must be one of {', '.join(MIXTURES)} or A+B+... of task "
                         f"names; got {body!r}")
    if len(set(tokens)) != len(tokens):
        raise ValueError(f"mixture {body!r} names a task twice")
    builders = [_one(t) for t in tokens]
    return lambda: Mixture(tuple(b() for b in builders), name=body)


def make_family(name: str):
    """The TaskFamily (or Mixture) named ``name``: see ``resolve``."""
    return resolve(name)()
