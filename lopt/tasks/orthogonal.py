"""Orthogonal initialization without LAPACK: the matrix ``jax.nn.initializers.orthogonal``
returns, computed by Gram–Schmidt in plain matmuls.

Why: jax's CPU QR (``lapack_sgeqrf_ffi``) splits a batch of factorizations over XLA's
intra-op thread pool and waits for the parts; when two such QRs run at once (vmapped recurrent
inits inside an unroll's reset branch) on a 2-thread pool, both threads wait for work only
the other could do, and the program hangs at 0% CPU (jax 0.10.2: every call to a char-RNN
evaluation after the first one or two). Gram–Schmidt needs no custom call.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np


def gram_schmidt(z: jax.Array) -> jax.Array:
    """Q of the QR factorization of z [n, k] (n ≥ k) with R's diagonal positive: classical
    Gram–Schmidt, each column orthogonalized twice (CGS2, accurate to rounding for any
    numerically full-rank z)."""
    n, k = z.shape
    index = jnp.arange(k)

    def column(j, q):
        v = jax.lax.dynamic_index_in_dim(z, j, axis=1, keepdims=False)
        for _ in range(2):
            v = v - q @ jnp.where(index < j, q.T @ v, 0.0)
        return jax.lax.dynamic_update_index_in_dim(q, v / jnp.linalg.norm(v), j, axis=1)

    return jax.lax.fori_loop(0, k, column, jnp.zeros_like(z))


def orthogonal(scale: float = 1.0, column_axis: int = -1):
    """An initializer equal to ``jax.nn.initializers.orthogonal(scale, column_axis)`` (the
    same normal draw; Q made unique by a positive R diagonal in both), without QR."""
    def init(key, shape, dtype=jnp.float32):
        if len(shape) < 2:
            raise ValueError("orthogonal initializer requires at least a 2D shape")
        n_rows, n_cols = math.prod(shape) // shape[column_axis], shape[column_axis]
        z = jax.random.normal(key, (max(n_rows, n_cols), min(n_rows, n_cols)), dtype)
        q = gram_schmidt(z)
        if n_rows < n_cols:
            q = q.T
        q = jnp.reshape(q, tuple(np.delete(shape, column_axis)) + (shape[column_axis],))
        return jnp.asarray(scale, dtype) * jnp.moveaxis(q, -1, column_axis)

    return init
