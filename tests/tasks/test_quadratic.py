import jax
import jax.numpy as jnp
import numpy as np

from lopt.tasks import quadratic_family


def test_loss_and_gradient_match_the_closed_form():
    family = quadratic_family(dim=10)
    cfg = family.sample(jax.random.PRNGKey(0))
    assert cfg["W"].shape == (10, 10) and cfg["y"].shape == (10,)
    task = family.build(cfg)
    params = task.init(jax.random.PRNGKey(1))
    theta = jnp.linspace(-1, 1, 10)
    W, y = np.asarray(cfg["W"], np.float64), np.asarray(cfg["y"], np.float64)
    residual = W @ np.asarray(theta) - y
    np.testing.assert_allclose(task.loss({"theta": theta}, None), residual @ residual, rtol=1e-5)
    grad = jax.grad(task.loss)({"theta": theta}, None)["theta"]
    np.testing.assert_allclose(grad, 2 * W.T @ residual, rtol=1e-4, atol=1e-5)
    assert float(jnp.std(params["theta"])) < 0.05


def test_instances_differ_by_key_and_vmap_over_cfg():
    family = quadratic_family(dim=4)
    cfgs = jax.vmap(family.sample)(jax.random.split(jax.random.PRNGKey(0), 3))
    assert not np.allclose(cfgs["W"][0], cfgs["W"][1])
    losses = jax.vmap(lambda c: family.build(c).loss({"theta": jnp.ones(4)}, None))(cfgs)
    for i in range(3):
        W, y = np.asarray(cfgs["W"][i]), np.asarray(cfgs["y"][i])
        np.testing.assert_allclose(losses[i], np.sum((W @ np.ones(4) - y) ** 2), rtol=1e-5)
