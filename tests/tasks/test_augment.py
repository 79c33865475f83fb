import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lopt.outer import broadcast_runs, init_inner_batch, truncated_unroll
from lopt.rules import adam
from lopt.tasks import quadratic_family, random_scaling, with_convex


def test_random_scaling_is_f_of_c_times_w_and_starts_in_place():
    base = quadratic_family(dim=5)
    family = random_scaling(base)
    cfg = family.sample(jax.random.PRNGKey(0))
    c = np.asarray(cfg["scale"]["theta"])
    assert c.shape == (5,) and np.all((c >= np.exp(-3)) & (c <= np.exp(3))) and c.std() > 0.1
    task, inner = family.build(cfg), base.build(cfg["inner"])
    key = jax.random.PRNGKey(1)
    w0 = task.init(key)
    np.testing.assert_allclose(c * np.asarray(w0["theta"]), inner.init(key)["theta"], rtol=1e-5)
    w = {"theta": jnp.linspace(-1, 1, 5)}
    np.testing.assert_allclose(task.loss(w, None), inner.loss({"theta": c * w["theta"]}, None),
                               rtol=1e-5)
    # Chain rule: ∇_w f(c ⊙ w) = c ⊙ ∇f(c ⊙ w).
    g = jax.grad(task.loss)(w, None)["theta"]
    g_inner = jax.grad(inner.loss)({"theta": c * w["theta"]}, None)["theta"]
    np.testing.assert_allclose(g, c * g_inner, rtol=1e-4)


def test_convex_combination_adds_a_random_quadratic():
    family = with_convex(quadratic_family(dim=3), dim=4)
    cfg = family.sample(jax.random.PRNGKey(0))
    task = family.build(cfg)
    params = task.init(jax.random.PRNGKey(1))
    assert set(params) == {"task", "convex"} and params["convex"].shape == (4,)
    A, b = np.asarray(cfg["A"]), np.asarray(cfg["b"])
    expected = (quadratic_family(dim=3).build(cfg["inner"]).loss(params["task"], None)
                + np.sum((A @ np.asarray(params["convex"]) - b) ** 2) / 4)
    np.testing.assert_allclose(task.loss(params, None), expected, rtol=1e-5)
    np.testing.assert_allclose(
        jax.grad(task.loss)(params, None)["convex"],
        2 * A.T @ (A @ np.asarray(params["convex"]) - b) / 4, rtol=1e-4, atol=1e-6)


def test_wrapped_families_vmap_through_the_unroll():
    family = with_convex(random_scaling(quadratic_family(dim=3)), dim=2)
    rule = adam(0.05)
    batch = init_inner_batch(rule, family, {}, jax.random.PRNGKey(0), 4, 20)
    _, out = truncated_unroll(rule, family, broadcast_runs({}, 4), batch, num_steps=10,
                              horizon=20)
    assert out.loss.shape == (10, 4) and bool(jnp.all(jnp.isfinite(out.loss)))


def test_bad_wrapper_arguments_name_the_field():
    with pytest.raises(ValueError, match="high"):
        random_scaling(quadratic_family(), low=1.0, high=0.0)
    with pytest.raises(ValueError, match="dim"):
        with_convex(quadratic_family(), dim=0)
