"""The hand-designed optimizers of Misra ("Optimization for Deep Networks") as UpdateRules.

Each is an optax transformation behind the UpdateRule interface with an empty theta: optax's
own SGD, momentum, Nesterov (NAG), AdaGrad (with r₀ = 0), RMSProp, AdaDelta, Adam and AdaMax,
and Rprop as Misra writes it (``scale_by_sign_rprop``), which optax's ``rprop`` is not.
"""
from __future__ import annotations

import numbers
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from lopt.rules.base import UpdateRule, no_theta


def from_optax(tx: optax.GradientTransformation, name: str, config: dict,
               eval_params=None) -> UpdateRule:
    """Wrap an optax transformation as an UpdateRule whose theta is empty (``eval_params``:
    where the rule is measured, for schedule-free methods)."""
    lr = config.get("learning_rate", 0.0)
    if not (callable(lr) or (isinstance(lr, numbers.Real) and not isinstance(lr, bool))
            or isinstance(lr, jax.Array)):
        raise TypeError(f"{name}: learning_rate must be a number or an optax schedule; got "
                        f"{lr!r}")
    tx = optax.with_extra_args_support(tx)

    def init(theta, params):
        del theta
        return tx.init(params)

    def update(theta, state, grads, params, loss=None):
        del theta, loss
        return tx.update(grads, state, params)

    return UpdateRule(init_meta=no_theta, init=init, update=update, name=name, config=dict(config),
                      eval_params=eval_params)


def sgd(learning_rate: float = 0.1) -> UpdateRule:
    """v = α f'(θ); θ ← θ − v."""
    return from_optax(optax.sgd(learning_rate), "sgd", {"learning_rate": learning_rate})


def momentum(learning_rate: float = 0.01, momentum: float = 0.9) -> UpdateRule:
    """v ← α f'(θ) + μ v; θ ← θ − v (heavy ball)."""
    return from_optax(optax.sgd(learning_rate, momentum=momentum), "momentum",
                      {"learning_rate": learning_rate, "momentum": momentum})


def nesterov(learning_rate: float = 0.01, momentum: float = 0.9) -> UpdateRule:
    """NAG (Sutskever 2012): v ← μ v + α f'(θ − μ v); θ ← θ − v. In optax's form, which
    receives f' at the parameters it holds: those are the look-ahead point θ − μ v."""
    return from_optax(optax.sgd(learning_rate, momentum=momentum, nesterov=True), "nesterov",
                      {"learning_rate": learning_rate, "momentum": momentum})


class SignRpropState(NamedTuple):
    step_sizes: Any
    prev_grads: Any


def scale_by_sign_rprop(learning_rate: float, eta_minus: float = 0.5, eta_plus: float = 1.2,
                        min_step_size: float = 1e-6,
                        max_step_size: float = 50.0) -> optax.GradientTransformation:
    """Misra's Rprop: v_t = η⁺ v_{t−1} if f'_t f'_{t−1} > 0, η⁻ v_{t−1} if < 0, else v_{t−1};
    θ_{t+1} = θ_t − sgn(f'_t) v_t, v_0 = δ = ``learning_rate``.

    The step uses the current gradient's sign and step size at once; optax's ``rprop`` emits
    each step one call late and zeroes the gradient after a sign change (iRprop⁻). Step sizes
    stay in [``min_step_size``, ``max_step_size``] (Riedmiller & Braun's Δmin, Δmax).
    """

    def init(params):
        return SignRpropState(jax.tree.map(lambda p: jnp.full_like(p, learning_rate), params),
                              jax.tree.map(jnp.zeros_like, params))

    def update(grads, state, params=None):
        del params

        def size(g, prev, v):
            agree = g * prev
            grown = jnp.minimum(v * eta_plus, max_step_size)
            shrunk = jnp.maximum(v * eta_minus, min_step_size)
            return jnp.where(agree > 0, grown, jnp.where(agree < 0, shrunk, v))

        sizes = jax.tree.map(size, grads, state.prev_grads, state.step_sizes)
        updates = jax.tree.map(lambda g, v: -jnp.sign(g) * v, grads, sizes)
        return updates, SignRpropState(sizes, grads)

    return optax.GradientTransformation(init, update)


def rprop(learning_rate: float = 0.01, eta_minus: float = 0.5, eta_plus: float = 1.2) -> UpdateRule:
    """Rprop (Riedmiller & Braun 1993) as Misra writes it: per-weight steps grow by η⁺ when
    the signs of the last two gradients agree and shrink by η⁻ when they differ."""
    return from_optax(scale_by_sign_rprop(learning_rate, eta_minus=eta_minus, eta_plus=eta_plus),
                      "rprop", {"learning_rate": learning_rate, "eta_minus": eta_minus,
                                "eta_plus": eta_plus})


def adagrad(learning_rate: float = 0.1) -> UpdateRule:
    """AdaGrad (Duchi et al. 2011): r_t = r_{t−1} + f'², r_0 = 0 as Misra writes it (optax's
    default starts at 0.1); v = α f' / √(r_t + 10⁻⁷)."""
    return from_optax(optax.adagrad(learning_rate, initial_accumulator_value=0.0), "adagrad",
                      {"learning_rate": learning_rate})


def rmsprop(learning_rate: float = 0.001, decay: float = 0.9) -> UpdateRule:
    """RMSProp (Tieleman & Hinton 2012): r ← γ r + (1 − γ) f'²; v = α f' / √r."""
    return from_optax(optax.rmsprop(learning_rate, decay=decay), "rmsprop",
                      {"learning_rate": learning_rate, "decay": decay})


def adadelta(learning_rate: float = 1.0, rho: float = 0.9) -> UpdateRule:
    """AdaDelta (Zeiler 2012): v = α √(p + ε)/√(r + ε) f' with decaying averages r of f'² and p of
    the squared steps before α (optax's form; Misra's p holds α's steps, the same at α = 1)."""
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
    "sgd": (sgd, "SGD (Misra)"),
    "momentum": (momentum, "SGD with heavy-ball momentum (Misra)"),
    "nesterov": (nesterov, "Nesterov accelerated gradient, NAG (Misra)"),
    "rprop": (rprop, "Rprop, sign-based per-weight steps, no lag (Misra)"),
    "adagrad": (adagrad, "AdaGrad, accumulator from r0 = 0 (Misra)"),
    "rmsprop": (rmsprop, "RMSProp (Misra)"),
    "adadelta": (adadelta, "AdaDelta (Misra)"),
    "adam": (adam, "Adam (Misra)"),
    "adamax": (adamax, "AdaMax (Misra)"),
}
