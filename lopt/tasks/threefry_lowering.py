"""Threefry-2x32 (Salmon et al. 2011), jax's default PRNG, lowered on CPU as jax lowers it on
every other platform: its 20 rounds unrolled into one out-of-line function. jax's CPU default is
a while loop of 5 iterations, ~25 operations each, which XLA:CPU's runtime dispatches one
operation at a time; every minibatch draw and perturbation inside an inner step pays it. The
bits are the same (the same rounds in the same order), so every seeded run draws what it drew
before; measured on PES over a 16-32-4 MLP task, the estimate runs ~10% faster and compiles in
about half the time (docs/performance.md).

Applied when ``lopt.tasks`` is imported (every program that samples tasks imports it);
``LOPT_JAX_THREEFRY=1`` keeps jax's own lowering. It reaches into jax's private lowering
registry, so on a jax without those parts it does nothing (``active()`` says which).
"""
from __future__ import annotations

import contextlib
import os

_ENV = "LOPT_JAX_THREEFRY"
_state = {"unrolled": False}


def _parts():
    """(mlir, the threefry primitive, its unrolled rule, its rolled CPU rule), or None."""
    try:
        from jax._src.interpreters import mlir
        from jax._src.random import threefry2x32 as tf

        return (mlir, tf.threefry2x32_p, tf._threefry2x32_lowering_rule,
                tf._threefry2x32_cpu_lowering_rule)
    except (ImportError, AttributeError):
        return None


def use_unrolled(unrolled: bool = True) -> bool:
    """Lower threefry on CPU unrolled (``True``) or with jax's rolled loop (``False``) in every
    program lowered from now on; returns whether the unrolled lowering is now in use."""
    parts = _parts()
    if parts is None:
        return False
    mlir, primitive, unrolled_rule, rolled_rule = parts
    # as jax registers each: the unrolled one out of line, the CPU loop inline
    mlir.register_lowering(primitive, unrolled_rule if unrolled else rolled_rule,
                           platform="cpu", inline=not unrolled)
    _state["unrolled"] = unrolled
    return unrolled


def active() -> bool:
    """Whether programs lowered now use the unrolled lowering on CPU."""
    return _state["unrolled"]


@contextlib.contextmanager
def jax_default():
    """Within the block, programs are lowered with jax's own CPU threefry (a side-by-side
    benchmark gives the other library jax's defaults); the previous choice after it."""
    before = active()
    use_unrolled(False)
    try:
        yield
    finally:
        use_unrolled(before)


def enable_unless_opted_out() -> bool:
    return use_unrolled() if os.environ.get(_ENV) != "1" else False
