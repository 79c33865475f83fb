"""Update rules (DESIGN.md: UpdateRule): hand-designed ones backed by optax, and learned ones."""
from lopt.rules.adafac_mlp import adafac_mlp
from lopt.rules.base import UpdateRule, check_settings, per_coordinate, unzip, zeros_per_coordinate
from lopt.rules.celo import celo
from lopt.rules.celo2 import celo2, celo2_base
from lopt.rules.celo_reference import celo_reference
from lopt.rules.hand_designed import (
    HAND_DESIGNED,
    adadelta,
    adagrad,
    adam,
    adamax,
    from_optax,
    momentum,
    nesterov,
    rmsprop,
    rprop,
    sgd,
)
from lopt.rules.hierarchical import hierarchical
from lopt.rules.history import normalized_history
from lopt.rules.hyperadam import hyperadam
from lopt.rules.l2l_lstm import l2l_lstm, log_sign_preprocess
from lopt.rules.multiscale_adam import multiscale_adam
from lopt.rules.optax_baselines import (
    ADAM_SEARCH_SPACE,
    MODERN_BASELINES,
    adam_all,
    adam_search_rule,
    adamw,
    lion,
    muon,
    nadamw,
    schedule_free_adamw,
)
from lopt.rules.per_parameter_mlp import per_parameter_mlp
from lopt.rules.rnnprop import rnnprop
from lopt.rules.velo import velo

LEARNED = {
    "l2l_lstm": (l2l_lstm, "coordinatewise 2x20 LSTM with log/sign preprocessing (L2L, "
                           "Andrychowicz et al. 2016)"),
    "rnnprop": (rnnprop, "ELU 20 + 2x20 LSTM on g/sqrt(v), m/sqrt(v); 0.1*tanh step (Lv, Chen & "
                         "Zhang 2017)"),
    "hyperadam": (hyperadam, "J Adams with learned per-step decay rates and weights (Wang, Sun & "
                             "Xu 2019)"),
    "multiscale_adam": (multiscale_adam, "learned combination of Adam at k timescales: "
                                         "LWA_a/b/c, MLP, RNN_a/b (Shahid 2017)"),
    "normalized_history": (normalized_history, "MLP on a normalized k-step gradient (or "
                                               "k-momentum) history; x_ref/x_diff update (Shahid "
                                               "2017)"),
    "per_parameter_mlp": (per_parameter_mlp, "per-parameter MLP on momenta, normalized features "
                                             "and step embeddings (Metz et al. 2019)"),
    "hierarchical": (hierarchical, "per-tensor LSTM on gradient-norm and loss features "
                                   "conditioning the per-parameter MLP (Metz et al. 2019)"),
    "adafac_mlp": (adafac_mlp, "2x4 per-parameter MLP on momenta, RMS and Adafactor factored "
                               "moments with learned decays (small_fc_lopt, Metz et al. 2022)"),
    "celo": (celo, "RMS-normalized Adafactor-feature MLP update times a learned per-tensor LSTM "
                   "step-size scheduler (Celo, Moudgil et al. 2025)"),
    "celo_reference": (celo_reference, "Celo exactly as released: stacked 2x4 split-input MLPs "
                                       "times param scale and a 64-unit LSTM scheduler "
                                       "(amoudgl/celo)"),
    "velo": (velo, "VeLO: per-tensor 512-unit LSTM hypernetwork mixing 256 per-parameter MLPs "
                   "and setting each tensor's step (Metz et al. 2022)"),
    "celo2": (celo2, "2x8 split-input MLP on momenta, RMS and Adafactor features, "
                     "Newton-Schulz-orthogonalized and RMS-normalized steps (Celo2, 2026)"),
    "celo2_base": (celo2_base, "Celo2 without the Newton-Schulz orthogonalization "
                               "(Celo2-base, 2026)"),
}

# The learned rules equal to a reference implementation, checked to 1e-5 on a fixture the
# reference itself wrote (tests/rules/test_conformance.py).
CONFORMANCE = {
    "adafac_mlp": ("google/learned_optimization@32186aa AdafacMLPLOpt with "
                   "clip_momentum_decays=false, as lopt import writes it; lopt's own default "
                   "also clips the momentum decays to [0, 1]"),
    "celo_reference": "amoudgl/celo@66d9761 celo.optimizers.celo.Celo",
    "velo": "google/learned_optimization@32186aa research/general_lopt/hyper_v2.HyperV2",
    "celo2": "amoudgl/celo@66d9761 celo2_optax.scale_by_celo2",
    "celo2_base": "amoudgl/celo@66d9761 celo2_optax.scale_by_celo2(orthogonalize=False)",
}

# Every hand-designed optimizer a comparison may use as a tuned baseline.
BASELINES = {**HAND_DESIGNED, **MODERN_BASELINES}
RULES = {**LEARNED, **BASELINES}


def make_rule(name: str, **config) -> UpdateRule:
    """The rule registered under ``name``, built with ``config`` as keyword arguments."""
    if name not in RULES:
        raise ValueError(f"rule must be one of {sorted(RULES)}, got {name!r}")
    check_settings(name, RULES[name][0], config)
    return RULES[name][0](**config)


__all__ = ["UpdateRule", "per_coordinate", "unzip", "zeros_per_coordinate", "from_optax",
           "l2l_lstm", "rnnprop", "hyperadam", "multiscale_adam", "normalized_history",
           "per_parameter_mlp", "hierarchical", "adafac_mlp", "celo", "celo2", "celo2_base",
           "celo_reference", "velo", "log_sign_preprocess", "sgd", "momentum", "nesterov", "rprop",
           "adagrad",
           "rmsprop", "adadelta", "adam", "adamax", "RULES", "LEARNED", "HAND_DESIGNED",
           "MODERN_BASELINES", "BASELINES", "adamw", "nadamw", "lion", "muon",
           "schedule_free_adamw", "adam_all", "adam_search_rule", "ADAM_SEARCH_SPACE",
           "make_rule", "CONFORMANCE"]
