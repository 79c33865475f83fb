"""celo2's per-coordinate MLP as the update computes it equals the split MLP on the explicitly
normalized, broadcast feature groups (the paper's definition, as Celo2's reference computes
it), in float64 to 1e-12, on every kind of tensor (vector, matrix either way round, conv
kernels with the factored axes last or first), both ways the update computes it: the
normalization folded into the first layer's weights (small tensors), and column by column
(from ``COLUMNWISE_MIN`` coordinates); row and column moments at their own size in both.
(A wide matrix differs from the tall one only by which axis is the row axis.)"""
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lopt.rules import adafactor_features as af

celo2 = importlib.import_module("lopt.rules.celo2")


@pytest.mark.parametrize("columnwise", [False, True])
@pytest.mark.parametrize("shape", [(7,), (9, 6), (3, 3, 4, 8), (8, 4, 3, 3)])
def test_the_mlp_outputs_equal_normalizing_first(shape, columnwise, monkeypatch):
    monkeypatch.setattr(celo2, "COLUMNWISE_MIN", 1 if columnwise else 10**9)
    with jax.enable_x64(True):
        key = jax.random.PRNGKey(len(shape))
        p = jax.random.normal(key, shape, jnp.float64)
        sizes = celo2.group_sizes(3, 1, 3, matrix=True)
        mlp = celo2.init_split_mlp(jax.random.fold_in(key, 1), sizes, 8, 2)
        acc = af.init_accumulators(p, 3, 1, 3)
        decays = [jnp.asarray(d, jnp.float64) for d in ((0.9, 0.99, 0.999), (0.95,),
                                                         (0.9, 0.99, 0.999))]
        for step in range(3):  # moments that differ per row and column
            g = jax.random.normal(jax.random.fold_in(key, 2 + step), shape, jnp.float64)
            acc = af.update_accumulators(acc, g * 10.0 ** -step, *decays)
        groups = celo2.feature_groups(p, g, acc)
        want = celo2.apply_split_mlp(
            mlp, [celo2.normalize_last_two_axes(x, p.ndim) for x in groups])
        ours = celo2.mlp_outputs(mlp, celo2.feature_groups(p, g, acc, broadcast=False), p.ndim)
        for i in (0, 1):
            assert ours[i].shape == shape
            np.testing.assert_allclose(np.asarray(ours[i]), np.asarray(want[..., i]),
                                       rtol=1e-12, atol=1e-12)
        if p.ndim >= 2:  # the row and column groups really were left unbroadcast
            small = celo2.feature_groups(p, g, acc, broadcast=False)[9:13]
            assert all(np.prod(x.shape[:-1]) < np.prod(shape) for x in small)


def _three_updates(tx, params):
    state, out = tx.init(params), []
    for t in range(3):
        grads = jax.tree.map(lambda p, t=t: jnp.sin(p * (t + 1.0)) * 10.0 ** -t, params)
        updates, state = tx.update(grads, state, params)
        out.append(updates)
        params = jax.tree.map(lambda p, u: p + u, params, updates)
    return out


def test_the_shipped_update_of_a_large_tensor_is_the_same_either_way(monkeypatch):
    """celo2_graft's whole update (its grafted magnitude and schedule included) on a tensor
    past ``COLUMNWISE_MIN``, column by column and through the folded matmul, in float64."""
    import lopt

    with jax.enable_x64(True):
        params = {"w": jnp.cos(jnp.arange(130 * 128, dtype=jnp.float64)).reshape(130, 128),
                  "b": jnp.linspace(-1.0, 1.0, 128)}
        runs = []
        for threshold in (1, 10**9):
            monkeypatch.setattr(celo2, "COLUMNWISE_MIN", threshold)
            runs.append(_three_updates(lopt.as_optax("celo2_graft", num_steps=10), params))
        for a, b in zip(*runs):
            for k in a:
                assert a[k].dtype == jnp.float64
                np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b[k]), rtol=1e-10,
                                           atol=1e-10 * float(jnp.abs(b[k]).max()))
