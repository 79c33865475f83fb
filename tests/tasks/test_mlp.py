import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lopt.tasks import datasets, mlp_classifier


def test_minibatch_loss_is_drawn_from_the_key_and_adam_learns():
    task = mlp_classifier(hidden=(16,), activation="relu", batch_size=64)
    params = task.init(jax.random.PRNGKey(0))
    assert params["Dense_0"]["kernel"].shape == (64, 16)
    k1, k2 = jax.random.PRNGKey(1), jax.random.PRNGKey(2)
    assert float(task.loss(params, k1)) == float(task.loss(params, k1))
    assert float(task.loss(params, k1)) != float(task.loss(params, k2))
    np.testing.assert_allclose(float(task.loss(params, k1)), np.log(10), atol=0.5)

    tx = optax.adam(1e-2)

    @jax.jit
    def run(params):
        def step(carry, key):
            p, s = carry
            g = jax.grad(task.loss)(p, key)
            u, s = tx.update(g, s, p)
            return (optax.apply_updates(p, u), s), None
        (p, _), _ = jax.lax.scan(step, (params, tx.init(params)),
                                 jax.random.split(jax.random.PRNGKey(3), 200))
        return p

    trained = run(params)
    keys = jax.random.split(jax.random.PRNGKey(4), 8)
    held_out = jnp.mean(jax.vmap(lambda k: task.valid_loss(trained, k))(keys))
    assert float(held_out) < 0.5
    # The test split behind test_metrics: loss and accuracy over all of it, by plain numpy.
    data = datasets.digits()
    metrics = jax.jit(task.test_metrics)(trained)
    h = np.maximum(np.asarray(data.test_x).reshape(-1, 64) @ np.asarray(
        trained["Dense_0"]["kernel"]) + np.asarray(trained["Dense_0"]["bias"]), 0)
    logits = h @ np.asarray(trained["Dense_1"]["kernel"]) + np.asarray(trained["Dense_1"]["bias"])
    y = np.asarray(data.test_y)
    log_p = logits - logits.max(1, keepdims=True)
    log_p = log_p - np.log(np.exp(log_p).sum(1, keepdims=True))
    np.testing.assert_allclose(float(metrics["loss"]), -log_p[np.arange(len(y)), y].mean(),
                               rtol=1e-4)
    assert float(metrics["accuracy"]) == pytest.approx(np.mean(logits.argmax(1) == y), abs=1e-6)
    assert float(metrics["accuracy"]) > 0.85


def test_bad_mlp_config_names_the_field():
    with pytest.raises(ValueError, match="activation"):
        mlp_classifier(activation="swishy")
    with pytest.raises(ValueError, match="hidden"):
        mlp_classifier(hidden=(0,))
    with pytest.raises(ValueError, match="at most 10 layers"):
        mlp_classifier(hidden=(4,) * 11)
