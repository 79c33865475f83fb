import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lopt.tasks import datasets, mlp_classifier


def test_digits_split_is_real_disjoint_and_fixed():
    data = datasets.digits()
    assert data.train_x.shape[1:] == (64,) and data.num_classes == 10
    assert data.train_x.shape[0] + data.test_x.shape[0] == 1797
    assert float(data.train_x.max()) == 1.0 and float(data.train_x.min()) == 0.0
    train_rows = {bytes(np.asarray(r)) for r in data.train_x}
    overlap = sum(bytes(np.asarray(r)) in train_rows for r in data.test_x)
    assert overlap < 20  # a handful of digits are drawn identically; the split itself is disjoint
    assert set(np.unique(np.asarray(data.test_y))) == set(range(10))


def test_unknown_dataset_names_the_offline_ones():
    with pytest.raises(ValueError, match="digits"):
        datasets.load("imagenet")


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
    held_out = jnp.mean(jax.vmap(lambda k: task.eval_loss(trained, k))(keys))
    assert float(held_out) < 0.5


def test_bad_mlp_config_names_the_field():
    with pytest.raises(ValueError, match="activation"):
        mlp_classifier(activation="swishy")
    with pytest.raises(ValueError, match="hidden"):
        mlp_classifier(hidden=(0,))
