"""Update rules (DESIGN.md: UpdateRule): hand-designed ones backed by optax, and learned ones."""
from lopt.rules.base import UpdateRule, per_coordinate, unzip, zeros_per_coordinate
from lopt.rules.hand_designed import HAND_DESIGNED, from_optax
from lopt.rules.hand_designed import (adadelta, adagrad, adam, adamax, momentum, nesterov, rmsprop,
                                      rprop, sgd)
from lopt.rules.l2l_lstm import l2l_lstm, log_sign_preprocess

LEARNED = {
    "l2l_lstm": (l2l_lstm, "coordinatewise 2x20 LSTM with log/sign preprocessing (L2L, seed 001)"),
}

RULES = {**LEARNED, **HAND_DESIGNED}


def make_rule(name: str, **config) -> UpdateRule:
    """The rule registered under ``name``, built with ``config`` as keyword arguments."""
    if name not in RULES:
        raise ValueError(f"rule must be one of {sorted(RULES)}, got {name!r}")
    return RULES[name][0](**config)


__all__ = ["UpdateRule", "per_coordinate", "unzip", "zeros_per_coordinate", "from_optax",
           "l2l_lstm", "log_sign_preprocess", "sgd", "momentum", "nesterov", "rprop", "adagrad",
           "rmsprop", "adadelta", "adam", "adamax", "RULES", "LEARNED", "HAND_DESIGNED",
           "make_rule"]
