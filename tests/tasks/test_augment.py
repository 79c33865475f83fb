import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lopt.outer import UnrollOptions, broadcast_runs, init_inner_batch, truncated_unroll
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
    _, out = truncated_unroll(rule, family, broadcast_runs({}, 4), batch,
                              UnrollOptions(num_runs=4, truncation=10, horizon=20))
    assert out.loss.shape == (10, 4) and bool(jnp.all(jnp.isfinite(out.loss)))


def test_bad_wrapper_arguments_name_the_field():
    with pytest.raises(ValueError, match="high"):
        random_scaling(quadratic_family(), low=1.0, high=0.0)
    with pytest.raises(ValueError, match="dim"):
        with_convex(quadratic_family(), dim=0)


@pytest.mark.parametrize("level", ["global", "tensor", "parameter"])
def test_reparameterization_draws_scales_at_its_level_over_its_decades(level):
    from lopt.tasks import mlp_family, reparameterize

    base = mlp_family("iris", hidden=(3,), batch_size=8)
    family = reparameterize(base, level=level, decades=4.0)
    cfg = family.sample(jax.random.PRNGKey(2))
    scales = [np.asarray(s) for s in jax.tree.leaves(cfg["scale"])]
    everything = np.concatenate([s.ravel() for s in scales])
    assert np.all((everything >= 10**-2 * 0.999) & (everything <= 10**2 * 1.001))
    per_leaf_distinct = [len(np.unique(s)) for s in scales]
    if level == "global":
        assert len(np.unique(everything)) == 1
    elif level == "tensor":
        assert max(per_leaf_distinct) == 1 and len(np.unique(everything)) == len(scales)
    else:
        assert max(per_leaf_distinct) > 1
    task, inner = family.build(cfg), base.build(cfg["inner"])
    key = jax.random.PRNGKey(3)
    phi0 = task.init(key)
    theta0 = inner.init(key)
    for p, s, t in zip(jax.tree.leaves(phi0), scales, jax.tree.leaves(theta0)):
        np.testing.assert_allclose(np.asarray(p) * s, t, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(task.loss(phi0, key), inner.loss(theta0, key), rtol=1e-5)
    g_phi = jax.grad(task.loss)(phi0, key)
    g_theta = jax.grad(inner.loss)(theta0, key)
    for gp, s, gt in zip(jax.tree.leaves(g_phi), scales, jax.tree.leaves(g_theta)):
        np.testing.assert_allclose(gp, s * np.asarray(gt), rtol=1e-4, atol=1e-6)


def test_reduced_batch_counts_only_the_first_examples():
    from lopt.tasks import mlp_family, reduced_batch
    from lopt.tasks.datasets import load

    base = mlp_family("iris", hidden=(3,), activation="relu", batch_size=16)
    family = reduced_batch(base, low=1)
    keeps = [int(family.sample(jax.random.PRNGKey(i))["batch_keep"]) for i in range(40)]
    assert min(keeps) >= 1 and max(keeps) <= 16 and len(set(keeps)) > 5
    cfg = dict(family.sample(jax.random.PRNGKey(0)), batch_keep=jnp.asarray(1, jnp.int32))
    task = family.build(cfg)
    params = task.init(jax.random.PRNGKey(1))
    key = jax.random.PRNGKey(5)
    # By hand: the loss is the cross-entropy of the first example of the drawn minibatch.
    data = load("iris")
    first = int(jax.random.randint(jax.random.split(key)[0], (16,), 0,
                                   data.train_x.shape[0])[0])
    h = np.maximum(np.asarray(data.train_x[first]) @ np.asarray(params["Dense_0"]["kernel"])
                   + np.asarray(params["Dense_0"]["bias"]), 0)
    logits = h @ np.asarray(params["Dense_1"]["kernel"]) + np.asarray(params["Dense_1"]["bias"])
    logits = logits - logits.max()
    expected = np.log(np.exp(logits).sum()) - logits[int(data.train_y[first])]
    np.testing.assert_allclose(float(task.loss(params, key)), expected, rtol=1e-4)
    with pytest.raises(ValueError, match="batch_keep"):
        reduced_batch(quadratic_family())


def test_label_noise_replaces_labels_at_its_rate_and_keeps_them_per_example():
    from lopt.tasks import label_noise, mlp_family
    from lopt.tasks.supervised import noisy_labels

    y = jnp.zeros(20000, jnp.int32)
    idx = jnp.arange(20000)
    key = jax.random.PRNGKey(0)
    np.testing.assert_array_equal(noisy_labels(key, 0.0, idx, y, 10), y)
    noisy = np.asarray(noisy_labels(key, 0.5, idx, y, 10))
    # Replaced with probability 0.5 by a uniform class, which is the old one 1/10 of the time.
    assert abs(np.mean(noisy != 0) - 0.45) < 0.02
    assert abs(np.bincount(noisy, minlength=10)[1:].std() / 1000) < 0.1
    again = np.asarray(noisy_labels(key, 0.5, idx[::-1], y, 10))[::-1]
    np.testing.assert_array_equal(noisy, again)  # the same example keeps its label
    family = label_noise(mlp_family("iris", hidden=(3,)), 0.1, 0.3)
    rates = [float(family.sample(jax.random.PRNGKey(i))["label_noise"]) for i in range(20)]
    assert 0.1 <= min(rates) and max(rates) <= 0.3
    with pytest.raises(ValueError, match="label_noise"):
        label_noise(quadratic_family())


def test_gradient_noise_is_zero_mean_with_its_scale():
    from lopt.tasks import gradient_noise

    base = quadratic_family(dim=3)
    family = gradient_noise(base, sigma=0.5)
    cfg = family.sample(jax.random.PRNGKey(0))
    task, inner = family.build(cfg), base.build(cfg)
    params = {"theta": jnp.ones(3)}
    grads = jax.vmap(lambda k: jax.grad(task.loss)(params, k)["theta"])(
        jax.random.split(jax.random.PRNGKey(1), 4000))
    clean = np.asarray(jax.grad(inner.loss)(params, None)["theta"])
    np.testing.assert_allclose(np.asarray(grads).mean(0), clean, atol=0.05)
    np.testing.assert_allclose(np.asarray(grads).std(0), 0.5, rtol=0.05)


def test_loss_scale_multiplies_the_training_and_validation_losses():
    from lopt.tasks import make_family
    from lopt.tasks.augment import loss_scale

    base = make_family("breast_cancer_mlp")
    family = loss_scale(base, 1e3)
    cfg = family.sample(jax.random.PRNGKey(0))
    task, inner = family.build(cfg), base.build(cfg)
    params, key = inner.init(jax.random.PRNGKey(1)), jax.random.PRNGKey(2)
    np.testing.assert_allclose(task.loss(params, key), 1e3 * inner.loss(params, key), rtol=1e-6)
    np.testing.assert_allclose(task.valid_loss(params, key), 1e3 * inner.valid_loss(params, key),
                               rtol=1e-6)
    assert family.name.endswith("_loss_x1000")
    with pytest.raises(ValueError, match="scale must be a positive finite number"):
        loss_scale(base, 0.0)
