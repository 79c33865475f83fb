"""Rematerialization in the unroll changes what backprop stores, never a value."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lopt.outer.scan import scan_steps, segment_length
from lopt.outer.unroll import (
    UnrollOptions,
    broadcast_runs,
    init_inner_batch,
    truncated_unroll,
)
from lopt.rules import l2l_lstm
from lopt.tasks.quadratic import quadratic_family


def test_segment_length_divides_and_is_near_the_square_root():
    assert [segment_length(k) for k in (1, 7, 10, 12, 50, 100)] == [1, 1, 2, 3, 5, 10]


@pytest.mark.parametrize("remat", ["step", "nested", "auto"])
def test_remat_gives_the_same_meta_gradient_as_storing_everything(remat):
    rule, family = l2l_lstm(hidden=4, layers=1), quadratic_family(dim=3)
    theta = rule.init_meta(jax.random.PRNGKey(0))
    batch = init_inner_batch(rule, family, theta, jax.random.PRNGKey(1), 2, 6)

    def total(theta, mode):
        opts = UnrollOptions(num_runs=2, truncation=12, horizon=6, remat=mode)
        _, out = truncated_unroll(rule, family, broadcast_runs(theta, 2), batch, opts)
        return jnp.mean(out.meta_loss)

    want = jax.grad(total)(theta, "none")
    got = jax.grad(total)(theta, remat)
    for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_nested_remat_stores_about_sqrt_k_carries():
    """Backprop through 64 steps of a carry of 4096 floats: storing everything keeps the 64
    carries and each step's intermediates; nested remat keeps 8 + 8 carries."""
    def body(c, _):
        return jnp.tanh(c * 1.01 + 0.1) * jnp.cos(c), jnp.sum(c)

    def peak(mode):
        f = jax.jit(jax.grad(lambda c: scan_steps(body, c, 64, mode)[1].sum()))
        return f.lower(jnp.ones(4096)).compile().memory_analysis().temp_size_in_bytes

    carry_bytes = 4096 * 4
    assert peak("none") >= 64 * carry_bytes
    assert peak("nested") <= 24 * carry_bytes
    with pytest.raises(ValueError, match="remat"):
        scan_steps(body, jnp.ones(3), 4, "always")


def test_auto_stores_everything_for_small_carries_and_nests_for_large_ones():
    def body(c, _):
        return jnp.tanh(c * 1.01 + 0.1) * jnp.cos(c), jnp.sum(c)

    def peak(mode, n):
        f = jax.jit(jax.grad(lambda c: scan_steps(body, c, 64, mode)[1].sum()))
        return f.lower(jnp.ones(n)).compile().memory_analysis().temp_size_in_bytes

    assert peak("auto", 4096) == peak("none", 4096)            # 64 x 16 KiB: stored
    assert peak("auto", 2**18) == peak("nested", 2**18)        # 64 x 1 MiB: nested
