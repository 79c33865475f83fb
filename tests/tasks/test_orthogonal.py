"""The QR-free orthogonal initializer the recurrent tasks use: jax's own orthogonal matrices,
and no LAPACK QR left in a recurrent task's unroll (its batched CPU kernel deadlocks XLA's
2-thread pool; lopt.tasks.orthogonal)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lopt.evaluation import loss_curves
from lopt.rules import adam
from lopt.tasks.orthogonal import gram_schmidt, orthogonal
from lopt.tasks.sequence import char_rnn_family


@pytest.mark.parametrize("shape", [(32, 128), (64, 16), (8, 8), (3, 4, 5)])
def test_orthogonal_equals_jax_initializer(shape):
    for seed in range(2):
        key = jax.random.PRNGKey(seed)
        ours = np.asarray(orthogonal(0.5)(key, shape))
        theirs = np.asarray(jax.nn.initializers.orthogonal(0.5)(key, shape))
        np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_gram_schmidt_matches_numpy_qr_with_positive_diagonal():
    z = np.random.default_rng(0).standard_normal((12, 5)).astype(np.float32)
    q, r = np.linalg.qr(z)
    q = q * np.sign(np.diag(r))
    ours = np.asarray(gram_schmidt(jnp.asarray(z)))
    np.testing.assert_allclose(ours, q, atol=1e-5)
    np.testing.assert_allclose(ours.T @ ours, np.eye(5), atol=1e-5)


def test_recurrent_task_unrolls_hold_no_lapack_call():
    family = char_rnn_family(hidden=4, embed=2, seq_len=4, batch_size=2)
    fn = jax.jit(lambda lr: loss_curves(adam(learning_rate=lr), {}, family,
                                        jax.random.PRNGKey(0), num_tasks=2, num_steps=1))
    text = fn.lower(jnp.float32(1e-3)).as_text()
    assert "geqrf" not in text and "lapack" not in text
