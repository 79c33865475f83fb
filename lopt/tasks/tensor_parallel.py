"""Tasks whose model is split over a mesh's ``model`` axis: Megatron-style tensor parallelism
(Shoeybi et al. 2019, "Megatron-LM", §3: column-parallel first and row-parallel second matrix
of each MLP, attention split by heads), declared with sharding constraints and left to XLA's
partitioner (GSPMD) to carry out.

Outside a mesh with a ``model`` axis the constraints are no-ops, so a tensor-parallel task is
the same function as its plain one on one device: meta-training on a ``runs × model`` mesh
(``lopt.outer.placement``) and a plain ``jax.jit`` on a laptop give equal losses."""
from __future__ import annotations

import dataclasses

import jax
from jax.sharding import PartitionSpec as P

from lopt.tasks.base import TaskFamily, map_params

MODEL_AXIS = "model"
_ATTENTION_IN = ("query", "key", "value")


def model_axis_size() -> int:
    """The size of the ``model`` axis of the mesh being traced under (1 when there is none)."""
    return dict(jax.sharding.get_abstract_mesh().shape).get(MODEL_AXIS, 1)


def _names(path) -> list:
    return [str(getattr(k, "key", getattr(k, "name", k))) for k in path]


def megatron_spec(path, shape, size: int) -> P:
    """The partition of one parameter over a model axis of ``size`` devices.

    Attention query/key/value kernels (d, heads, head_dim) and their biases split by heads,
    the output projection (heads, head_dim, d) by its heads input; a dense kernel (a, b) that
    widens (b > a: an MLP's first matrix, a read-out) splits its outputs (column-parallel,
    with its bias), one that narrows (an MLP's second matrix) its inputs (row-parallel), so a
    block needs one reduction of activations, not a gather per matrix. Embeddings, norms and
    every axis that ``size`` does not divide stay replicated."""
    names = _names(path)
    leaf, owner = names[-1], (names[-2] if len(names) > 1 else "")

    def split(axis):
        if shape[axis] % size:
            return P()
        spec = [None] * len(shape)
        spec[axis] = MODEL_AXIS
        return P(*spec)

    if owner in _ATTENTION_IN and leaf == "kernel" and len(shape) == 3:
        return split(1)
    if owner in _ATTENTION_IN and leaf == "bias" and len(shape) == 2:
        return split(0)
    if owner == "out" and leaf == "kernel" and len(shape) == 3:
        return split(0)
    if leaf == "kernel" and len(shape) == 2:
        return split(1) if shape[1] >= shape[0] else split(0)
    return P()


def megatron_specs(params, size: int):
    """``megatron_spec`` of every leaf of ``params`` (a pytree of arrays or shapes); a
    column-parallel dense layer's bias splits with its outputs."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    names = [tuple(_names(path)) for path, _ in flat]
    specs = {n: megatron_spec(path, tuple(x.shape), size) for n, (path, x) in zip(names, flat)}

    def with_bias(n, x):
        kernel = specs.get(n[:-1] + ("kernel",))
        if n[-1] == "bias" and len(x.shape) == 1 and kernel == P(None, MODEL_AXIS):
            return P(MODEL_AXIS)
        return specs[n]

    return jax.tree_util.tree_unflatten(treedef, [with_bias(n, x) for n, (_, x) in
                                                  zip(names, flat)])


def constrain(params, specs=megatron_specs):
    """``params`` with every leaf constrained to its partition over the current mesh's model
    axis; unchanged where there is no such axis (one device, a plain ``jit``)."""
    size = model_axis_size()
    if size == 1:
        return params
    return jax.tree.map(jax.lax.with_sharding_constraint, params, specs(params, size))


def tensor_parallel(family: TaskFamily, specs=megatron_specs) -> TaskFamily:
    """``family`` with its parameters split over the mesh's ``model`` axis, at initialization and
    wherever a loss reads them (so gradients and the optimizer's update follow the split).

    ``specs(params, size)`` gives each leaf's ``PartitionSpec``; the default is
    ``megatron_specs``. The losses are the plain family's: only where arrays live changes."""
    def build(cfg):
        inner = family.build(cfg)
        place = lambda p: constrain(p, specs)  # noqa: E731
        return map_params(inner, init=lambda key: place(inner.init(key)), to_inner=place)

    return dataclasses.replace(family, build=build, name=f"{family.name}_tp")
