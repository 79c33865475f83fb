"""Lifting a per-coordinate rule over every coordinate of a pytree, in cache-sized chunks.

A learned rule's network runs on every coordinate with shared weights. Written per coordinate
and ``jax.vmap``-ed over a whole leaf, each layer becomes one skinny matmul and one elementwise
pass over an array of n × width floats: for a million coordinates every intermediate leaves the
cache, and the update runs at memory speed, 10-30× off its FLOP floor. Here a leaf is cut into
chunks of ``chunk`` coordinates and a ``lax.map`` applies the vmapped rule to one chunk at a
time, so a chunk's intermediates stay in cache. It changes no arithmetic: every coordinate
sees exactly the operations it saw before. Small leaves are not concatenated into one block:
on XLA's CPU backend the concatenations, the splits and the per-tensor values broadcast to
every coordinate cost more than the network calls they save (meta-training on a 676-parameter
MLP got 1.5-4× slower; docs/performance.md).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

# Coordinates per chunk: the 2×20 LSTM's update on a 2-core CPU took 1.24 s unchunked and
# 0.35-0.48 s with chunks of 4096-65536 coordinates (1M coordinates; 16384 among the fastest).
DEFAULT_CHUNK = 16384


def _leaves_of(params, tree):
    """The arrays of ``tree`` at each parameter leaf (tree has params' structure as a prefix)."""
    return jax.tree.structure(params).flatten_up_to(tree)


def _map_chunks(fn, args: list, n: int, chunk: int):
    """fn on [chunk, ...] slices of args (pytrees of [n, ...] arrays), results concatenated."""
    whole, tail = divmod(n, chunk)
    outs = []
    if whole:
        head = jax.tree.map(lambda x: x[:whole * chunk].reshape((whole, chunk) + x.shape[1:]),
                            args)
        mapped = jax.lax.map(lambda xs: fn(*xs), head)
        outs.append(jax.tree.map(lambda o: o.reshape((whole * chunk,) + o.shape[2:]), mapped))
    if tail:
        outs.append(fn(*jax.tree.map(lambda x: x[whole * chunk:], args)))
    if len(outs) == 1:
        return outs[0]
    return jax.tree.map(lambda a, b: jnp.concatenate([a, b]), *outs)


def _vmapped(apply, theta, shared, ndim: int):
    """apply vmapped over the ``ndim`` leading axes of each input (theta and the leaf's shared
    value broadcast)."""
    fixed = (theta,) if shared is None else (theta, shared)
    fn = lambda *xs: apply(*fixed, *xs)
    for _ in range(ndim):
        fn = jax.vmap(fn)
    return fn


def chunking_pays() -> bool:
    """Whether leaves above a chunk are flattened and mapped chunk by chunk: on one CPU device,
    where it keeps a chunk's intermediates in cache. Elsewhere every leaf keeps its shape
    (nested vmaps, no reshape), so a tensor sharded along any axis stays sharded and the
    update runs where its shards live."""
    return jax.default_backend() == "cpu" and jax.device_count() == 1


def _leaf(apply, theta, shared, inputs: list, shape: tuple, chunk: int):
    """apply over every coordinate of one leaf of ``shape``."""
    n = 1
    for d in shape:
        n *= d
    if n <= chunk or not chunking_pays():
        return _vmapped(apply, theta, shared, len(shape))(*inputs)
    flat = [jax.tree.map(lambda x: x.reshape((n,) + x.shape[len(shape):]), col)
            for col in inputs]
    out = _map_chunks(_vmapped(apply, theta, shared, 1), flat, n, chunk)
    return jax.tree.map(lambda o: o.reshape(shape + o.shape[1:]), out)


def per_coordinate(apply: Callable, chunk: int = DEFAULT_CHUNK) -> Callable:
    """Lift ``apply(theta, *per_coordinate_inputs) -> outputs`` over every coordinate of every leaf.

    Each tree argument has the parameters' structure as a prefix: at every parameter leaf of
    shape ``s`` it holds arrays of shape ``s + extra`` (``extra`` may be empty: a gradient,
    or ``(layers, units)``: a per-coordinate hidden state). ``apply`` sees one coordinate:
    scalars and arrays of shape ``extra``. The lifted function returns, at every parameter
    leaf, ``apply``'s output with the leaf's shape prepended. The network's weights in
    ``theta`` are shared and its state is separate per coordinate.

    ``lifted(theta, params, *trees, per_tensor=None)``: ``per_tensor``, a tree with params'
    structure as a prefix, gives each leaf a value shared by its coordinates; ``apply`` then
    receives it right after ``theta``.
    """

    def lifted(theta, params, *trees, per_tensor=None):
        p_leaves, treedef = jax.tree.flatten(params)
        columns = [p_leaves] + [_leaves_of(params, t) for t in trees]
        shared = [None] * len(p_leaves) if per_tensor is None else _leaves_of(params, per_tensor)
        results = [_leaf(apply, theta, shared[i], [col[i] for col in columns], p.shape, chunk)
                   for i, p in enumerate(p_leaves)]
        return jax.tree.unflatten(treedef, results)

    return lifted
