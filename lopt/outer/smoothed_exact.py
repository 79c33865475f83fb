"""A meta-learning problem whose smoothed meta-gradient is known exactly (Metz et al. 2019's
target).

A fixed 2-D quadratic f(x) = ‖Wx − y‖² from x₀ = 0, trained for H = 8 steps by momentum SGD
whose learning rate and momentum are the meta-parameters θ = (lr, mom). The meta-loss
L(θ) = (1/H) Σ_t f(x_{t+1}) is a polynomial in θ of degree ≤ 2H, so the gradient of its
Gaussian smoothing E_ε[L(θ + σε)] is computed exactly by Gauss–Hermite quadrature. Used by the
estimator tests and by ``lopt bench estimators`` to measure bias and mean squared error.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from lopt.rules.base import UpdateRule
from lopt.tasks.base import Task, fixed_family

H = 8
W = np.array([[1.0, 0.4], [0.2, 0.6]])
Y = np.array([1.0, -1.0])
THETA = {"lr": 0.2, "mom": 0.2}


def momentum_rule() -> UpdateRule:
    """m ← mom·m + g; x ← x − lr·m, with θ = (lr, mom)."""
    def update(theta, state, grads, params, loss):
        m = jax.tree.map(lambda m, g: theta["mom"] * m + g, state, grads)
        return jax.tree.map(lambda m: -theta["lr"] * m, m), m

    return UpdateRule(init_meta=lambda key: {k: jnp.asarray(v) for k, v in THETA.items()},
                      init=lambda theta, params: jax.tree.map(jnp.zeros_like, params),
                      update=update, name="momentum_meta")


def reference_meta_loss(theta, weighting="mean", loss_clip=None):
    """L(θ), written out independently of lopt's unroll: the mean of f(x_{t+1}) over the H
    steps (``weighting="mean"``) or f(x_H) alone (``"last"``), each f clipped at
    ``loss_clip`` when given."""
    x, m, losses = jnp.zeros(2), jnp.zeros(2), []
    for _ in range(H):
        g = 2 * W.T @ (W @ x - Y)
        m = theta["mom"] * m + g
        x = x - theta["lr"] * m
        f = jnp.sum((W @ x - Y) ** 2)
        losses.append(f if loss_clip is None else jnp.minimum(f, loss_clip))
    return losses[-1] if weighting == "last" else sum(losses) / H


def smoothed_gradient(sigma, nodes=24, **kwargs):
    """∇_θ E_ε[L(θ + σε)] by tensor-product Gauss–Hermite quadrature (exact for this L; with
    ``loss_clip`` L is piecewise polynomial and the quadrature approximate)."""
    x, w = np.polynomial.hermite_e.hermegauss(nodes)
    w = w / np.sqrt(2 * np.pi)
    grad = jax.jit(jax.grad(lambda th: reference_meta_loss(th, **kwargs)))
    total = {k: 0.0 for k in THETA}
    for i in range(nodes):
        for j in range(nodes):
            g = grad({"lr": THETA["lr"] + sigma * x[i], "mom": THETA["mom"] + sigma * x[j]})
            for k in THETA:
                total[k] += w[i] * w[j] * float(g[k])
    return np.array([total["lr"], total["mom"]])


def plain_gradient(**kwargs):
    g = jax.grad(lambda th: reference_meta_loss(th, **kwargs))(THETA)
    return np.array([float(g["lr"]), float(g["mom"])])


def estimates(estimator, calls, seed=0):
    """``calls`` consecutive meta-gradient estimates of ``estimator`` on this problem, as rows
    [lr, mom]."""
    task = Task(init=lambda key: {"x": jnp.zeros(2)},
                loss=lambda p, key: jnp.sum((jnp.asarray(W) @ p["x"] - jnp.asarray(Y)) ** 2))
    rule, family = momentum_rule(), fixed_family(task)
    est = estimator.build(rule, family)
    theta = rule.init_meta(None)

    def body(state, _):
        g, state, _ = est.grad(theta, state, None)
        return state, jnp.stack([g["lr"], g["mom"]])

    state = est.init(jax.random.PRNGKey(seed), theta)
    _, rows = jax.jit(lambda s: jax.lax.scan(body, s, None, length=calls))(state)
    return np.asarray(rows)


def bias_and_mse(samples, target) -> dict:
    """Bias (per coordinate, and in standard errors) and mean squared error of estimates."""
    bias = samples.mean(axis=0) - target
    se = samples.std(axis=0, ddof=1) / np.sqrt(len(samples))
    return {"bias": bias.tolist(), "bias_in_se": (bias / se).tolist(),
            "mse": float(((samples - target) ** 2).sum(axis=1).mean()),
            "total_variance": float(samples.var(axis=0, ddof=1).sum())}
