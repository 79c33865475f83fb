"""A convolution whose gradient stays fast inside ``lax.scan`` on XLA's CPU backend.

Every inner step of lopt runs in a ``lax.scan`` body. There XLA:CPU runs the two convolutions of
a convolution's reverse mode (the input gradient, a transposed convolution, and the kernel
gradient, batch and feature swapped) 7-37x slower than the same ops outside a loop (jax issue
#12868, open since 2022; measured with jax 0.10.2: a 3x3, 16-channel kernel gradient on 64 28x28
images, 4.3 ms outside a loop and 160 ms per iteration inside one). A forward convolution in
channels-last layout is fast in both places, so this one's custom VJP writes both gradients as
forward convolutions in that layout (Dumoulin & Visin 2016, "A guide to convolution arithmetic",
section 4: the transpose of a stride-s convolution is a convolution of the s-dilated output
gradient with the flipped kernel). The gradients are the same arithmetic as XLA's own.

``conv_general_dilated`` takes ``lax.conv_general_dilated``'s arguments, so it goes into
``flax.linen.Conv(conv_general_dilated=...)``; what it does not cover (dilation, feature
groups, other layouts) goes to ``lax.conv_general_dilated`` unchanged. Reverse mode of any
order works; forward mode (``jax.jvp``) does not, as for every custom VJP.
"""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax


def _channels_last(ndim: int) -> lax.ConvDimensionNumbers:
    """Batch, spatial..., features for inputs and outputs; spatial..., in, out for kernels:
    flax's layout."""
    spatial = tuple(range(1, ndim - 1))
    return lax.ConvDimensionNumbers((0, ndim - 1) + spatial, (ndim - 1, ndim - 2)
                                    + tuple(range(ndim - 2)), (0, ndim - 1) + spatial)


def _forward(x, k, strides, pads, precision):
    return lax.conv_general_dilated(x, k, strides, pads, dimension_numbers=_channels_last(x.ndim),
                                    precision=precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv(x, k, strides, pads, precision):
    return _forward(x, k, strides, pads, precision)


def _conv_fwd(x, k, strides, pads, precision):
    return _forward(x, k, strides, pads, precision), (x, k)


def _conv_bwd(strides, pads, precision, residuals, dy):
    x, k = residuals
    nd = x.ndim - 2
    window = k.shape[:nd]
    padded = jnp.pad(x, ((0, 0),) + pads + ((0, 0),))
    # Kernel gradient: the padded input with batch and features swapped, convolved with the
    # output gradient as a kernel dilated by the stride; a stride that does not divide the
    # input leaves a few trailing positions, cut off.
    dk = lax.conv_general_dilated(jnp.moveaxis(padded, (0, nd + 1), (nd + 1, 0)),
                                  jnp.moveaxis(dy, 0, nd), (1,) * nd, ((0, 0),) * nd,
                                  rhs_dilation=strides, dimension_numbers=_channels_last(x.ndim),
                                  precision=precision)
    dk = jnp.moveaxis(dk[(slice(None),) + tuple(slice(0, w) for w in window)], 0, nd)
    # Input gradient: the stride-dilated output gradient convolved with the flipped kernel,
    # in and out swapped, padded to cover the padded input, then the padding cut away.
    flipped = jnp.swapaxes(jnp.flip(k, tuple(range(nd))), -1, -2)
    rest = [padded.shape[1 + d] - (strides[d] * (dy.shape[1 + d] - 1) + window[d])
            for d in range(nd)]
    dpadded = lax.conv_general_dilated(
        dy, flipped, (1,) * nd, [(w - 1, w - 1 + r) for w, r in zip(window, rest)],
        lhs_dilation=strides, dimension_numbers=_channels_last(x.ndim), precision=precision)
    dx = dpadded[(slice(None),) + tuple(slice(lo, lo + x.shape[1 + d])
                                        for d, (lo, _) in enumerate(pads))]
    return dx.astype(x.dtype), dk.astype(k.dtype)


_conv.defvjp(_conv_fwd, _conv_bwd)


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         batch_group_count=1, precision=None, preferred_element_type=None):
    """``lax.conv_general_dilated``, its gradient computed by forward convolutions when the
    convolution is a plain channels-last one (flax's ``nn.Conv`` default)."""
    nd = lhs.ndim - 2
    plain = (all(d == 1 for d in (lhs_dilation or (1,) * nd))
             and all(d == 1 for d in (rhs_dilation or (1,) * nd))
             and feature_group_count == 1 and batch_group_count == 1
             and preferred_element_type is None and lhs.dtype == rhs.dtype
             and lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
             == _channels_last(lhs.ndim))
    if not plain:
        return lax.conv_general_dilated(
            lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
            rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
            feature_group_count=feature_group_count, batch_group_count=batch_group_count,
            precision=precision, preferred_element_type=preferred_element_type)
    strides = tuple(int(s) for s in window_strides)
    if isinstance(padding, str):
        pads = lax.padtype_to_pads(lhs.shape[1:-1], rhs.shape[:-2], strides, padding)
    else:
        pads = padding
    pads = tuple((int(lo), int(hi)) for lo, hi in pads)
    if min(min(p) for p in pads) < 0:  # cropping, which jnp.pad cannot undo
        return lax.conv_general_dilated(lhs, rhs, strides, pads, precision=precision,
                                        dimension_numbers=dimension_numbers)
    return _conv(lhs, rhs, strides, pads, precision)


def Conv(*args, **kwargs) -> nn.Conv:  # noqa: N802 - a module constructor, named as flax's
    """``flax.linen.Conv`` with this module's convolution: the same parameters and outputs."""
    return nn.Conv(*args, conv_general_dilated=conv_general_dilated, **kwargs)
