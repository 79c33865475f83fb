"""lopt.tasks.loop_conv: the convolution whose gradient is written as forward convolutions.
References: lax.conv_general_dilated's own VJP (first and second order), central finite
differences, and the layout of every convolution in the lowered program."""
import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from lopt.evaluation import loss_curves
from lopt.rules import adam
from lopt.tasks import augment, normalized
from lopt.tasks.bigger import resnet_family
from lopt.tasks.loop_conv import conv_general_dilated
from lopt.tasks.normalize import AdamReference

CASES = [  # input shape, kernel shape, strides, padding
    ((3, 9, 9, 2), (3, 3, 2, 4), (1, 1), "SAME"),
    ((3, 10, 10, 2), (3, 3, 2, 4), (2, 2), "SAME"),
    ((2, 11, 9, 3), (4, 2, 3, 2), (2, 3), "VALID"),
    ((2, 7, 7, 2), (1, 1, 2, 3), (2, 2), "SAME"),
    ((2, 8, 8, 1), (3, 3, 1, 2), (1, 1), ((2, 0), (1, 3))),
    ((3, 13, 2), (5, 2, 3), (2,), "VALID"),  # 1-D, as the MNIST-1D net
    ((3, 12, 2), (5, 2, 3), (2,), "SAME"),
]


def _random(shape, seed):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _dims(x):
    spatial = "HW"[:x.ndim - 2]
    return ("N" + spatial + "C", spatial + "IO", "N" + spatial + "C")


def _pair(x_shape, k_shape, strides, padding):
    x, k = _random(x_shape, 0), _random(k_shape, 1)
    dims = lax.conv_dimension_numbers(x.shape, k.shape, _dims(x))

    def ours(x, k):
        return conv_general_dilated(x, k, strides, padding, dimension_numbers=dims)

    def theirs(x, k):
        return lax.conv_general_dilated(x, k, strides, padding, dimension_numbers=dims)

    return x, k, ours, theirs


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}_{c[2]}_{c[3]}")
def test_value_and_vjp_equal_lax(case):
    x, k, ours, theirs = _pair(*case)
    y = ours(x, k)
    np.testing.assert_allclose(y, theirs(x, k), rtol=1e-5, atol=1e-5)
    dy = _random(y.shape, 2)
    got = jax.vjp(ours, x, k)[1](dy)
    want = jax.vjp(theirs, x, k)[1](dy)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)


def test_gradient_matches_finite_differences():
    x, k, ours, _ = _pair(*CASES[1])
    loss = lambda k: jnp.sum(jnp.sin(ours(x, k)))  # noqa: E731
    g = np.asarray(jax.grad(loss)(k))
    eps = 1e-2
    rng = np.random.default_rng(3)
    for _ in range(5):
        d = jnp.asarray(rng.normal(size=k.shape), jnp.float32)
        fd = (float(loss(k + eps * d)) - float(loss(k - eps * d))) / (2 * eps)
        assert abs(fd - float(np.sum(g * np.asarray(d)))) < 2e-2 * max(1.0, abs(fd))


def test_second_order_equals_lax():
    """Meta-gradients differentiate through the inner gradient: grad of grad must hold."""
    x, k, ours, theirs = _pair(*CASES[1])

    def meta(conv):
        inner = lambda k: jnp.sum(conv(x, k) ** 2)  # noqa: E731
        return jax.grad(lambda k: jnp.sum(jnp.tanh(k - 0.1 * jax.grad(inner)(k))))(k)

    np.testing.assert_allclose(meta(ours), meta(theirs), rtol=1e-4, atol=1e-4)


def _layouts(conv, x, k):
    grad = jax.jit(jax.grad(lambda x, k: jnp.sum(conv(x, k) ** 2), argnums=(0, 1)))
    return re.findall(r"stablehlo\.convolution.*?dim_numbers = (\[[^]]*\]x\[[^]]*\]->\[[^]]*\])",
                      grad.lower(x, k).as_text())


def test_every_convolution_of_the_gradient_is_channels_last():
    """The mechanism: XLA:CPU runs the backward convolutions of lax's VJP (batch and feature
    swapped, kernel in/out swapped) many times slower inside a loop; ours lowers every
    convolution of the gradient in the forward layout."""
    x, k, ours, theirs = _pair(*CASES[1])
    forward = "[b, 0, 1, f]x[0, 1, i, o]->[b, 0, 1, f]"
    assert _layouts(ours, x, k) == [forward] * 3
    assert _layouts(theirs, x, k)[0] == forward and set(_layouts(theirs, x, k)) != {forward}


def test_vmap_over_kernels_and_what_it_does_not_cover():
    x, k, ours, theirs = _pair(*CASES[0])
    ks = jnp.stack([k, 2 * k])
    np.testing.assert_allclose(jax.vmap(ours, (None, 0))(x, ks),
                               jax.vmap(theirs, (None, 0))(x, ks), rtol=1e-5, atol=1e-5)
    dims = lax.conv_dimension_numbers(x.shape, k.shape, _dims(x))
    # Dilation and feature groups go to lax unchanged.
    for kw in ({"rhs_dilation": (2, 2)}, {"lhs_dilation": (2, 1)}):
        pads = ((1, 1), (1, 1))
        np.testing.assert_allclose(
            conv_general_dilated(x, k, (1, 1), pads, dimension_numbers=dims, **kw),
            lax.conv_general_dilated(x, k, (1, 1), pads, dimension_numbers=dims, **kw),
            rtol=1e-5, atol=1e-5)
    grouped = _random((3, 3, 1, 4), 4)
    np.testing.assert_allclose(
        conv_general_dilated(x, grouped, (1, 1), "SAME", dimension_numbers=dims,
                             feature_group_count=2),
        lax.conv_general_dilated(x, grouped, (1, 1), "SAME", dimension_numbers=dims,
                                 feature_group_count=2), rtol=1e-5, atol=1e-5)


def test_sequential_runs_keep_the_curves_and_survive_wrappers():
    """A ResNet family steps its runs one after another on a CPU; the curves equal batched
    stepping's within float rounding, and every wrapper keeps the flag."""
    family = resnet_family("shapes_16", widths=(4,), blocks=1, batch_size=4)
    assert family.sequential_runs
    batched = dataclasses.replace(family, sequential_runs=False)
    key = jax.random.PRNGKey(0)
    a = loss_curves(adam(1e-2), {}, family, key, num_tasks=2, num_steps=2)
    b = loss_curves(adam(1e-2), {}, batched, key, num_tasks=2, num_steps=2)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    reference = AdamReference(family.name, 2.0, 0.5, 1e-3, 4, 2, 0, (1e-3,))
    wrapped = [augment.reparameterize(family, "global"), augment.low_precision(family),
               augment.random_scaling(family), normalized(family, reference)]
    assert all(w.sequential_runs for w in wrapped)
