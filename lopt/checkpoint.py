"""Atomic, exact pytree files: ``.npz`` archives of leaves keyed by tree path, plus JSON metadata."""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import jax
import numpy as np

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
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes owner-only files; keep the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def read_metadata(path: str) -> dict:
    """The JSON metadata stored beside the arrays."""
    with np.load(path, allow_pickle=False) as data:
        if META_KEY not in data:
            raise ValueError(f"{path} is not a lopt file (no {META_KEY} entry)")
        return json.loads(bytes(data[META_KEY]).decode())


def load_pytree(path: str, template: Any) -> Any:
    """Read ``path`` into the structure of ``template``; every path, shape and dtype must match."""
    with np.load(path, allow_pickle=False) as data:
        stored = {k: data[k] for k in data.files if k != META_KEY}
    leaves, treedef = jax.tree_util.tree_flatten_with_path(template)
    expected = {_path_key(p) for p, _ in leaves}
    if set(stored) != expected:
        missing = sorted(expected - set(stored))
        extra = sorted(set(stored) - expected)
        raise ValueError(f"{path} does not match the expected structure: missing {missing[:5]}, "
                         f"unexpected {extra[:5]}")
    out = []
    for p, leaf in leaves:
        value = stored[_path_key(p)]
        shape, dtype = tuple(np.shape(leaf)), np.dtype(leaf.dtype)
        if value.shape != shape or value.dtype != dtype:
            raise ValueError(f"{path}: {_path_key(p)} has shape {value.shape} {value.dtype}, "
                             f"expected {shape} {dtype}")
        out.append(jax.numpy.asarray(value))
    return jax.tree_util.tree_unflatten(treedef, out)
