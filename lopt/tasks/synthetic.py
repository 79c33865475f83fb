"""Analytic test functions and the synthetic problems of Wichrowska et al. 2017 ("Learned
Optimizers that Scale and Generalize") that fit the Task interface."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lopt.tasks.base import Task, TaskFamily
from lopt.tasks.supervised import log_uniform


def _rosenbrock(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def _beale(x):
    a, b = x[0], x[1]
    return ((1.5 - a + a * b) ** 2 + (2.25 - a + a * b**2) ** 2
            + (2.625 - a + a * b**3) ** 2)


def _booth(x):
    return (x[0] + 2 * x[1] - 7) ** 2 + (2 * x[0] + x[1] - 5) ** 2


def _matyas(x):
    return 0.26 * (x[0] ** 2 + x[1] ** 2) - 0.48 * x[0] * x[1]


def _branin(x):
    a, b, c = 1.0, 5.1 / (4 * jnp.pi**2), 5.0 / jnp.pi
    r, s, t = 6.0, 10.0, 1.0 / (8 * jnp.pi)
    return a * (x[1] - b * x[0] ** 2 + c * x[0] - r) ** 2 + s * (1 - t) * jnp.cos(x[0]) + s


def _styblinski_tang(x):
    return 0.5 * jnp.sum(x**4 - 16 * x**2 + 5 * x) + 39.16617 * x.shape[0]


# name: (f, dim, initial point, initial spread, description). Minimum values: Rosenbrock,
# Beale, Booth, Matyas and (shifted) Styblinski-Tang 0; Branin 0.397887.
FUNCTIONS = {
    "rosenbrock": (_rosenbrock, 2, (-1.0, 1.0), 0.2, "Rosenbrock's valley (min 0 at (1, 1))"),
    "beale": (_beale, 2, (1.0, 1.0), 0.5, "Beale's function (min 0 at (3, 0.5))"),
    "booth": (_booth, 2, (0.0, 0.0), 1.0, "Booth's function (min 0 at (1, 3))"),
    "matyas": (_matyas, 2, (5.0, -5.0), 1.0, "Matyas' function (min 0 at the origin)"),
    "branin": (_branin, 2, (0.0, 5.0), 2.0, "Branin's function (min 0.3979, three minima)"),
    "styblinski_tang": (_styblinski_tang, 4, (0.0, 0.0, 0.0, 0.0), 1.0,
                        "Styblinski–Tang in 4-d, shifted so its global minimum is ~0"),
}


def function_family(name: str, scale=(0.5, 2.0)) -> TaskFamily:
    """``scale · f(x)`` for one of FUNCTIONS; per instance the scale is log-uniform in ``scale``
    and x starts at the function's initial point plus N(0, spread²) noise."""
    if name not in FUNCTIONS:
        raise ValueError(f"function must be one of {', '.join(FUNCTIONS)}; got {name!r}")
    fn, dim, start, spread, _ = FUNCTIONS[name]
    start = jnp.asarray(start, jnp.float32)

    def sample(key):
        return {"scale": log_uniform(key, *scale)}

    def build(cfg):
        def init(key):
            return {"x": start + spread * jax.random.normal(key, (dim,))}

        def loss(params, key):
            del key
            return cfg["scale"] * fn(params["x"])

        return Task(init=init, loss=loss)

    return TaskFamily(sample=sample, build=build, name=name)


def rosenbrock_family(dim: int = 2, scale=(0.5, 2.0)) -> TaskFamily:
    """The chained Rosenbrock function in ``dim`` dimensions, Σ 100(x_{i+1} − x_i²)² + (1 −
    x_i)²."""
    if not isinstance(dim, int) or dim < 2:
        raise ValueError(f"dim must be an integer >= 2; got {dim!r}")

    def sample(key):
        return {"scale": log_uniform(key, *scale)}

    def build(cfg):
        return Task(init=lambda key: {"x": -1.0 + 0.2 * jax.random.normal(key, (dim,))},
                    loss=lambda params, key: cfg["scale"] * _rosenbrock(params["x"]))

    return TaskFamily(sample=sample, build=build, name=f"rosenbrock{dim}")


def log_sum_exp_family(dim: int = 10, terms: int = 20) -> TaskFamily:
    """f(x) = log Σ_i exp(a_iᵀx + b_i) with a_i, b_i ~ N(0, 1): Wichrowska et al.'s convex,
    smooth, non-quadratic problem (here with a quadratic term 0.01‖x‖² so a minimum exists)."""

    def sample(key):
        ka, kb = jax.random.split(key)
        return {"A": jax.random.normal(ka, (terms, dim)), "b": jax.random.normal(kb, (terms,))}

    def build(cfg):
        def loss(params, key):
            del key
            x = params["x"]
            return jax.nn.logsumexp(cfg["A"] @ x + cfg["b"]) + 0.01 * jnp.sum(x**2)

        return Task(init=lambda key: {"x": jax.random.normal(key, (dim,))}, loss=loss)

    return TaskFamily(sample=sample, build=build, name=f"log_sum_exp{dim}x{terms}")


def sparse_softmax_family(dim: int = 32, classes: int = 5, examples: int = 256,
                          density: float = 0.1, batch_size: int = 32) -> TaskFamily:
    """Softmax regression on random sparse inputs (each feature nonzero with probability
    ``density``) labelled by a random teacher: Wichrowska et al.'s sparse problem, where most
    gradient coordinates are zero at every step."""

    def sample(key):
        kx, km, kt = jax.random.split(key, 3)
        x = jax.random.normal(kx, (examples, dim)) * (jax.random.uniform(km, (examples, dim))
                                                      < density)
        teacher = jax.random.normal(kt, (dim, classes))
        return {"x": x, "y": jnp.argmax(x @ teacher, axis=-1)}

    def build(cfg):
        def loss(params, key):
            idx = jax.random.randint(key, (batch_size,), 0, examples)
            logits = cfg["x"][idx] @ params["w"] + params["b"]
            return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(batch_size), cfg["y"][idx]])

        def init(key):
            return {"w": 0.01 * jax.random.normal(key, (dim, classes)), "b": jnp.zeros(classes)}

        return Task(init=init, loss=loss)

    return TaskFamily(sample=sample, build=build, name=f"sparse_softmax{dim}x{classes}")
