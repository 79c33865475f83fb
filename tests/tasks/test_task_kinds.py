"""Every kind of task: finite, deterministic in its key, jit- and vmap-compilable, and Adam
lowers its loss within a few dozen steps. Small shapes; one compile per kind."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lopt import tasks
from lopt.tasks import FAMILIES, make_family
from lopt.tasks.bigger import mixer_family, resnet_family, vit_family
from lopt.tasks.datasets import TFDS_DATASETS

P = pytest.param
KINDS = [
    P(lambda: tasks.mlp_family(hidden=(8, 8), activation="elu", initializer="he_normal",
                               batch_size=32, subset_size=500, init_scale=(0.5, 2.0)), 0.1,
      id="mlp"),
    P(lambda: tasks.linear_family("iris"), 0.1, id="logistic"),
    P(lambda: tasks.linear_family("diabetes"), 0.1, id="linear_regression"),
    P(lambda: tasks.mlp_family("friedman", hidden=(8,), activation="relu", batch_size=32), 0.1,
      id="mlp_regression"),
    P(lambda: tasks.conv_family(channels=(8,), batch_size=32), 0.02, id="conv_pool"),
    P(lambda: tasks.conv_family(channels=(4,), head="fc", fc=(8,), batch_norm=True,
                                pool="avg", batch_size=32), 0.1, id="conv_fc_bn"),
    P(lambda: tasks.sine_lstm_family(hidden=8, batch_size=32), 0.1, id="sine_lstm"),
    P(lambda: tasks.char_rnn_family(cell="gru", hidden=8, embed=4, seq_len=8, batch_size=8),
      0.1, id="char_rnn"),
    P(lambda: tasks.transformer_lm_family(d_model=8, heads=2, seq_len=8, batch_size=8), 0.1,
      id="transformer"),
    P(lambda: tasks.autoencoder_family(hidden=(8, 4), batch_size=32), 0.05, id="autoencoder"),
    P(lambda: tasks.vae_family(hidden=(8,), latent=2, batch_size=32), 0.05, id="vae"),
    P(lambda: tasks.quadratic_family(dim=6, nonlinearity="tanh", condition=1.0), 0.1,
      id="quadratic_tanh"),
    P(lambda: tasks.rosenbrock_family(3), 0.1, id="rosenbrock"),
    P(lambda: resnet_family("shapes_16", widths=(4, 8), blocks=1, batch_size=16), 0.05,
      id="resnet"),
    P(lambda: vit_family("shapes_16", patch=4, width=16, depth=1, heads=2, batch_size=16),
      0.05, id="vit"),
    P(lambda: mixer_family("shapes_16", patch=4, width=16, depth=1, token_hidden=8,
                           channel_hidden=16, batch_size=16), 0.05, id="mixer"),
    P(lambda: tasks.log_sum_exp_family(), 0.1, id="log_sum_exp"),
    P(lambda: tasks.sparse_softmax_family(), 0.02, id="sparse_softmax"),
] + [P(lambda name=name: tasks.function_family(name), 0.01, id=name)
     for name in tasks.synthetic.FUNCTIONS if name != "rosenbrock"]


@pytest.mark.parametrize("make,min_drop", KINDS)
def test_task_kind_is_finite_deterministic_vmappable_and_adam_learns(make, min_drop):
    family = make()
    tx = optax.adam(3e-2)

    def probe(key):
        k_cfg, k_init, k_loss, k_run = jax.random.split(key, 4)
        task = family.build(family.sample(k_cfg))
        params, state = task.init(k_init), task.new_state(k_init)
        twice = jnp.stack([task.train_loss(params, state, k_loss)[0],
                           task.train_loss(params, state, k_loss)[0]])

        def step(carry, k):
            p, s, o = carry
            (loss, s), g = jax.value_and_grad(task.train_loss, has_aux=True)(p, s, k)
            u, o = tx.update(g, o, p)
            return (optax.apply_updates(p, u), s, o), loss

        _, curve = jax.lax.scan(step, (params, state, tx.init(params)),
                                jax.random.split(k_run, 60))
        return twice, curve

    # Two instances in one vmap, as the unroll runs them; one compile for everything.
    twice, curves = jax.device_get(jax.jit(jax.vmap(probe))(
        jax.random.split(jax.random.PRNGKey(0), 2)))
    assert np.all(np.isfinite(twice)) and np.all(twice[:, 0] == twice[:, 1])
    assert np.all(np.isfinite(curves))
    start, end = curves[:, :5].mean(), curves[:, -5:].mean()
    assert end < start - min_drop * abs(start), (start, end)


@pytest.mark.parametrize("name", [n for n in FAMILIES
                                  if n not in ("cifar10_conv", "fashion_mnist_mlp",
                                               "cifar10_resnet")])
def test_every_registered_task_traces_with_finite_shapes(name):
    family = make_family(name)

    def loss_and_grad(key):
        task = family.build(family.sample(key))
        (loss, _), grads = jax.value_and_grad(task.train_loss, has_aux=True)(
            task.init(key), task.new_state(key), key)
        return loss, grads

    loss, grads = jax.eval_shape(loss_and_grad, jax.random.PRNGKey(0))
    assert loss.shape == () and loss.dtype == jnp.float32
    assert grads and all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads))


def test_minibatches_come_from_the_key_on_data_tasks():
    family = tasks.mlp_family(hidden=(4,), batch_size=8)
    task = family.build(family.sample(jax.random.PRNGKey(0)))
    params = task.init(jax.random.PRNGKey(1))
    losses = {float(task.loss(params, jax.random.PRNGKey(k))) for k in range(4)}
    assert len(losses) == 4


def test_tfds_tasks_say_what_to_do_when_the_data_is_missing(tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "tensorflow_datasets", None)
    for name in ("cifar10_conv", "fashion_mnist_mlp"):
        with pytest.raises(ValueError, match="needs tensorflow-datasets"):
            make_family(name)
    assert set(TFDS_DATASETS) >= {"cifar10", "fashion_mnist"}


def test_batch_norm_statistics_are_task_state_updated_as_a_running_average():
    family = tasks.conv_family(channels=(4,), batch_norm=True, batch_size=16)
    task = family.build(family.sample(jax.random.PRNGKey(0)))
    params = task.init(jax.random.PRNGKey(1))
    s0 = task.new_state(jax.random.PRNGKey(1))
    mean0 = s0["batch_stats"]["BatchNorm_0"]["mean"]
    np.testing.assert_array_equal(mean0, 0.0)
    key = jax.random.PRNGKey(2)
    step = jax.jit(lambda s: task.train_loss(params, s, key))
    _, s1 = step(s0)
    _, s2 = step(s1)
    m1, m2 = (s["batch_stats"]["BatchNorm_0"]["mean"] for s in (s1, s2))
    # Same batch twice, momentum 0.9 from zero: m1 = 0.1 b, m2 = 0.9 m1 + 0.1 b = 1.9 m1.
    assert float(jnp.abs(m1).max()) > 1e-3
    np.testing.assert_allclose(m2, 1.9 * m1, rtol=1e-5)
    # Inference mode reads the carried statistics: different state, different eval loss.
    assert (float(task.validation_loss(params, s0, key))
            != float(task.validation_loss(params, s2, key)))


def test_unroll_carries_task_state_and_final_test_metrics_read_it():
    from lopt.evaluation import final_test_metrics
    from lopt.outer import (
        Horizon,
        UnrollOptions,
        broadcast_runs,
        init_inner_batch,
        truncated_unroll,
    )
    from lopt.rules import adam

    family = tasks.conv_family(channels=(4,), batch_norm=True, batch_size=16)
    rule = adam(0.01)
    batch = init_inner_batch(rule, family, {}, jax.random.PRNGKey(0), 2, Horizon(50),
                             stagger=False)
    opts = UnrollOptions(num_runs=2, truncation=3, horizon=50)
    new, _ = jax.jit(lambda b: truncated_unroll(rule, family, broadcast_runs({}, 2), b,
                                                opts))(batch)
    var = np.asarray(new.task_state["batch_stats"]["BatchNorm_0"]["var"])
    assert var.shape == (2, 4) and not np.allclose(var, 1.0)
    metrics = final_test_metrics(rule, {}, family, jax.random.PRNGKey(0), num_tasks=2,
                                 num_steps=3)
    assert metrics["loss"].shape == (2,) and np.all(np.isfinite(metrics["loss"]))
    assert np.all((metrics["accuracy"] >= 0) & (metrics["accuracy"] <= 1))


@pytest.mark.parametrize("build,field", [
    (lambda: tasks.conv_family(channels=(0,)), "channels"),
    (lambda: tasks.conv_family(pool="median"), "pool"),
    (lambda: tasks.conv_family(dataset="wine"), "image classification"),
    (lambda: tasks.char_rnn_family(hidden=2), "hidden"),
    (lambda: tasks.char_rnn_family(cell="lstmish"), "cell"),
    (lambda: tasks.transformer_lm_family(layers=9), "layers"),
    (lambda: tasks.transformer_lm_family(d_model=30, heads=4), "heads"),
    (lambda: tasks.sine_lstm_family(noise="huge"), "noise"),
    (lambda: tasks.vae_family(latent=0), "latent"),
    (lambda: tasks.autoencoder_family(dataset="diabetes"), "image dataset"),
    (lambda: tasks.mlp_family(dataset="pysource"), "classification or regression"),
    (lambda: tasks.mlp_family(subset_size=10**6), "subset_size"),
    (lambda: tasks.quadratic_family(condition=9.0), "condition"),
    (lambda: tasks.function_family("himmelblau"), "function"),
])
def test_sizes_and_choices_out_of_range_name_the_field(build, field):
    with pytest.raises(ValueError, match=field) as err:
        build()
    assert "\n" not in str(err.value)
