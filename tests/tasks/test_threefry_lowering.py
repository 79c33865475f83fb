"""lopt lowers jax's threefry unrolled on CPU (lopt.tasks.threefry_lowering): the same bits as
the Threefry-2x32-20 of Salmon et al. 2011 (computed here in numpy, and Random123's known
answer) and as jax's own rolled lowering, with no while loop left in the program."""
import os
import subprocess
import sys

import jax
import jax.extend.random as jrandom
import jax.numpy as jnp
import numpy as np

import lopt.tasks  # noqa: F401 (applies the lowering)
from lopt.tasks import threefry_lowering

ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def _threefry_numpy(key, x):
    """Threefry-2x32 with 20 rounds (Salmon et al. 2011, Random123's threefry2x32), uint32."""
    rotl = lambda v, r: ((v << np.uint32(r)) | (v >> np.uint32(32 - r))).astype(np.uint32)
    ks = [np.uint32(key[0]), np.uint32(key[1]),
          np.uint32(key[0]) ^ np.uint32(key[1]) ^ np.uint32(0x1BD11BDA)]
    x0, x1 = (x[0] + ks[0]).astype(np.uint32), (x[1] + ks[1]).astype(np.uint32)
    for block in range(5):
        for r in ROTATIONS[block % 2]:
            x0 = (x0 + x1).astype(np.uint32)
            x1 = rotl(x1, r) ^ x0
        x0 = (x0 + ks[(block + 1) % 3]).astype(np.uint32)
        x1 = (x1 + ks[(block + 2) % 3] + np.uint32(block + 1)).astype(np.uint32)
    return x0, x1


def _compiled_text(fn, *args) -> str:
    return jax.jit(fn).lower(*args).compile().as_text()


def test_the_unrolled_lowering_is_in_use_and_leaves_no_loop():
    assert threefry_lowering.active()
    draw = lambda k: jax.random.normal(k, (64,))  # noqa: E731
    assert " while(" not in _compiled_text(draw, jax.random.PRNGKey(0))
    with threefry_lowering.jax_default():
        assert " while(" in _compiled_text(lambda k: jax.random.normal(k, (64,)),
                                           jax.random.PRNGKey(0))
    assert threefry_lowering.active()


def test_the_bits_are_threefry_2x32_20_and_jaxs_own():
    with np.errstate(over="ignore"):
        key = np.array([0x13198A2E, 0x03707344], np.uint32)
        count = np.array([0x243F6A88, 0x85A308D3], np.uint32)
        got = jax.jit(jrandom.threefry_2x32)(jnp.asarray(key), jnp.asarray(count))
        np.testing.assert_array_equal(got, [0xC4923A9C, 0x483DF7A0])  # Random123's answer
        rng = np.random.default_rng(0)
        key = rng.integers(0, 2**32, 2, dtype=np.uint32)
        count = rng.integers(0, 2**32, (2, 1000), dtype=np.uint32)
        got = jax.jit(jrandom.threefry_2x32)(jnp.asarray(key), jnp.asarray(count.reshape(-1)))
        want = np.concatenate(_threefry_numpy(key, count))
        np.testing.assert_array_equal(np.asarray(got), want)

    def draws(k):
        a, b = jax.random.split(k)
        return (jax.random.normal(a, (3, 50)), jax.random.randint(b, (7,), 0, 1000),
                jax.random.fold_in(k, 3), jax.vmap(jax.random.uniform)(jax.random.split(k, 4)))

    ours = jax.jit(draws)(jax.random.PRNGKey(7))
    with threefry_lowering.jax_default():
        theirs = jax.jit(lambda k: draws(k))(jax.random.PRNGKey(7))
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs)):
        np.testing.assert_array_equal(a, b)


def test_an_environment_variable_keeps_jaxs_lowering():
    code = "import lopt.tasks; from lopt.tasks import threefry_lowering as t; print(t.active())"
    env = {**os.environ, "LOPT_JAX_THREEFRY": "1"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.stdout.strip() == "False", out.stderr[-500:]
