"""celo2's first layer as the update computes it (normalization folded into the weights, row
and column moments multiplied at their own size) equals the split MLP on the explicitly
normalized, broadcast feature groups (the paper's definition, as Celo2's reference computes
it), in float64 to 1e-12, on every kind of tensor: vector, matrix either way round, conv
kernels with the factored axes last or first."""
import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lopt.rules import adafactor_features as af

celo2 = importlib.import_module("lopt.rules.celo2")


@pytest.mark.parametrize("shape", [(7,), (6, 9), (9, 6), (3, 3, 4, 8), (8, 4, 3, 3), (1, 5)])
def test_the_folded_first_layer_equals_normalizing_first(shape):
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
        ours = celo2.apply_normalized_split_mlp(
            mlp, celo2.feature_groups(p, g, acc, broadcast=False), p.ndim)
        assert ours.shape == want.shape == shape + (celo2.OUTPUTS,)
        np.testing.assert_allclose(np.asarray(ours), np.asarray(want), rtol=1e-12, atol=1e-12)
        if p.ndim >= 2:  # the row and column groups really were left unbroadcast
            small = celo2.feature_groups(p, g, acc, broadcast=False)[9:13]
            assert all(np.prod(x.shape[:-1]) < np.prod(shape) for x in small) or 1 in shape
