"""The hand-designed optimizers of seed 002 (Misra, "Optimization for Deep Networks") as UpdateRules.

Every one is optax's own transformation behind the UpdateRule interface with an empty theta:
SGD, momentum, Nesterov (NAG), Rprop, AdaGrad, RMSProp, AdaDelta, Adam, AdaMax.
"""
from __future__ import annotations

import optax

from lopt.rules.base import UpdateRule, no_theta


def from_optax(tx: optax.GradientTransformation, name: str, config: dict) -> UpdateRule:
    """Wrap an optax transformation as an UpdateRule whose theta is empty."""
    tx = optax.with_extra_args_support(tx)

    def init(theta, params):
        del theta
        return tx.init(params)

    def update(theta, state, grads, params, loss=None):
        del theta, loss
        return tx.update(grads, state, params)

    return UpdateRule(init_meta=no_theta, init=init, update=update, name=name, config=dict(config))


def sgd(learning_rate: float = 0.1) -> UpdateRule:
    """v = α f'(θ); θ ← θ − v."""
    return from_optax(optax.sgd(learning_rate), "sgd", {"learning_rate": learning_rate})


def momentum(learning_rate: float = 0.01, momentum: float = 0.9) -> UpdateRule:
    """v ← α f'(θ) + μ v; θ ← θ − v (heavy ball)."""
    return from_optax(optax.sgd(learning_rate, momentum=momentum), "momentum",
                      {"learning_rate": learning_rate, "momentum": momentum})


def nesterov(learning_rate: float = 0.01, momentum: float = 0.9) -> UpdateRule:
    """NAG (Sutskever 2012): the gradient is taken after the momentum jump (optax's form)."""
    return from_optax(optax.sgd(learning_rate, momentum=momentum, nesterov=True), "nesterov",
                      {"learning_rate": learning_rate, "momentum": momentum})


def rprop(learning_rate: float = 0.01, eta_minus: float = 0.5, eta_plus: float = 1.2) -> UpdateRule:
    """Rprop (Riedmiller & Braun 1993): per-weight steps grow by η+ when signs agree, shrink by η−."""
    return from_optax(optax.rprop(learning_rate, eta_minus=eta_minus, eta_plus=eta_plus), "rprop",
                      {"learning_rate": learning_rate, "eta_minus": eta_minus,
                       "eta_plus": eta_plus})


def adagrad(learning_rate: float = 0.1) -> UpdateRule:
    """AdaGrad (Duchi et al. 2011): r ← r + f'²; v = α f' / √r."""
    return from_optax(optax.adagrad(learning_rate), "adagrad", {"learning_rate": learning_rate})


def rmsprop(learning_rate: float = 0.001, decay: float = 0.9) -> UpdateRule:
    """RMSProp (Tieleman & Hinton 2012): r ← γ r + (1 − γ) f'²; v = α f' / √r."""
    return from_optax(optax.rmsprop(learning_rate, decay=decay), "rmsprop",
                      {"learning_rate": learning_rate, "decay": decay})


def adadelta(learning_rate: float = 1.0, rho: float = 0.9) -> UpdateRule:
    """AdaDelta (Zeiler 2012): v = α √(p + ε)/√(r + ε) f' with decaying averages r of f'² and p of v²."""
    return from_optax(optax.adadelta(learning_rate, rho=rho), "adadelta",
                      {"learning_rate": learning_rate, "rho": rho})


def adam(learning_rate: float = 0.001, b1: float = 0.9, b2: float = 0.999,
         eps: float = 1e-8) -> UpdateRule:
    """Adam (Kingma & Ba 2015): bias-corrected first and second moments, v = α r̂ / √p̂."""
    return from_optax(optax.adam(learning_rate, b1=b1, b2=b2, eps=eps), "adam",
                      {"learning_rate": learning_rate, "b1": b1, "b2": b2, "eps": eps})


def adamax(learning_rate: float = 0.002, b1: float = 0.9, b2: float = 0.999) -> UpdateRule:
    """AdaMax (Kingma & Ba 2015): p ← max(γ₂ p, |f'|); v = α r̂ / p."""
    return from_optax(optax.adamax(learning_rate, b1=b1, b2=b2), "adamax",
                      {"learning_rate": learning_rate, "b1": b1, "b2": b2})


HAND_DESIGNED = {
    "sgd": (sgd, "SGD (seed 002)"),
    "momentum": (momentum, "SGD with heavy-ball momentum (seed 002)"),
    "nesterov": (nesterov, "Nesterov accelerated gradient, NAG (seed 002)"),
    "rprop": (rprop, "Rprop, sign-based per-weight steps (seed 002)"),
    "adagrad": (adagrad, "AdaGrad (seed 002)"),
    "rmsprop": (rmsprop, "RMSProp (seed 002)"),
    "adadelta": (adadelta, "AdaDelta (seed 002)"),
    "adam": (adam, "Adam (seed 002)"),
    "adamax": (adamax, "AdaMax (seed 002)"),
}
