"""Exact pytree files (format of lopt ≤ 0.1 and legacy checkpoints): ``.npz`` archives of leaves
keyed by tree path, plus JSON metadata, written atomically."""
from __future__ import annotations

import json
from typing import Any

import jax
import numpy as np

from lopt.files.atomic import write_atomically
from lopt.files.errors import FileFormatError, reading

META_KEY = "__lopt_meta__"


def _path_key(path) -> str:
    return jax.tree_util.keystr(path)


def save_pytree(path: str, tree: Any, metadata: dict | None = None) -> None:
    """Write ``tree`` to ``path`` atomically: a temp file in the same folder, fsynced, then renamed,
    so a crash mid-write leaves the previous file intact."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    arrays = {_path_key(p): np.asarray(jax.device_get(leaf)) for p, leaf in leaves}
    if META_KEY in arrays:
        raise ValueError(f"tree path {META_KEY!r} is reserved")
    arrays[META_KEY] = np.frombuffer(json.dumps(metadata or {}).encode(), dtype=np.uint8)
    write_atomically(path, lambda f: np.savez(f, **arrays), suffix=".npz")


def read_metadata(path: str) -> dict:
    """The JSON metadata stored beside the arrays (a JSON object)."""
    with reading(path):
        with np.load(path, allow_pickle=False) as data:
            if not hasattr(data, "files") or META_KEY not in data.files:
                raise FileFormatError(f"{path}: not a lopt file (no {META_KEY} entry)")
            meta = json.loads(bytes(data[META_KEY]).decode())
    if not isinstance(meta, dict):
        raise FileFormatError(f"{path}: metadata must be a JSON object, got "
                              f"{type(meta).__name__}")
    return meta


def load_pytree(path: str, template: Any, cast_floats: bool = False) -> Any:
    """Read ``path`` into the structure of ``template``; every path, shape and dtype must match
    (``cast_floats``: as ``arrays_to_tree``)."""
    with reading(path):
        with np.load(path, allow_pickle=False) as data:
            # Reading every member checks its CRC-32: a flipped bit fails here, not later.
            stored = {k: data[k] for k in data.files if k != META_KEY}
    return arrays_to_tree(path, stored, template, cast_floats)


def arrays_to_tree(path: str, stored: dict, template: Any, cast_floats: bool = False) -> Any:
    """``stored`` (tree-path key → array) in the structure of ``template``; one line naming
    ``path`` and the first difference in keys, shapes or dtypes. With ``cast_floats`` a stored
    float array of another float dtype is accepted and cast to the template's (a rule file
    written in float32 read under x64, and the reverse)."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    expected = {_path_key(p) for p, _ in leaves}
    if set(stored) != expected:
        missing = sorted(expected - set(stored))
        extra = sorted(set(stored) - expected)
        raise FileFormatError(f"{path}: does not match the expected structure: missing "
                              f"{missing[:5]}, unexpected {extra[:5]}")
    out = []
    for p, leaf in leaves:
        value = stored[_path_key(p)]
        shape, dtype = tuple(np.shape(leaf)), np.dtype(leaf.dtype)
        if cast_floats and value.shape == shape and np.issubdtype(value.dtype, np.floating) \
                and np.issubdtype(dtype, np.floating):
            value = value.astype(dtype)
        if value.shape != shape or value.dtype != dtype:
            raise FileFormatError(f"{path}: {_path_key(p)} has shape {value.shape} {value.dtype}, "
                                  f"expected {shape} {dtype}")
        out.append(jax.numpy.asarray(value))
    return jax.tree_util.tree_unflatten(treedef, out)
