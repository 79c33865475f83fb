"""A ``.lopt`` rule file (or a shipped optimizer's name) read into torch tensors without JAX:
the same header and checksum checks as ``lopt.load`` (``lopt.files.rule_format``)."""
from __future__ import annotations

import os
import re

import torch

from lopt.files.errors import FileFormatError, UsageError, check_readable
from lopt.files.rule_format import read_safetensors
from lopt.files.semantics import config_for_version, unrecorded_version
from lopt.pretrained import PRETRAINED
from lopt.pretrained import path as pretrained_path

_KEY = re.compile(r"\['([^']*)'\]|\[(\d+)\]")

def resolve(source: str) -> str:
    """The file of ``source``: a shipped optimizer's name or a path to a ``.lopt`` file."""
    if isinstance(source, (str, os.PathLike)) and os.path.exists(source):
        return os.fspath(source)
    if source in PRETRAINED:
        return pretrained_path(source)
    raise UsageError(f"rule must be a shipped optimizer ({', '.join(PRETRAINED)}) or an "
                     f"existing .lopt file; got {source!r}")


def _tree(path: str, tensors: dict) -> dict:
    """Tensors keyed by JAX tree paths ("['first']['w'][0]") as nested dicts and lists."""
    root: dict = {}
    # list items in index order (as strings "[10]" would sort before "[2]")
    for key in sorted(tensors, key=lambda k: [(0, int(i)) if i else (1, n)
                                              for n, i in _KEY.findall(k)]):
        parts = [int(i) if i else n for n, i in _KEY.findall(key)]
        if not parts or "".join(m.group(0) for m in _KEY.finditer(key)) != key:
            raise FileFormatError(f"{path}: tensor name {key!r} is not a tree path")
        node = root
        for part, nxt in zip(parts[:-1], parts[1:]):
            node = _child(node, part, [] if isinstance(nxt, int) else {})
        _child(node, parts[-1], torch.from_numpy(tensors[key].copy()).to(torch.float32))
    return root


def _child(node, part, default):
    if isinstance(node, list):
        while len(node) <= part:
            node.append(None)
        if node[part] is None:
            node[part] = default
        return node[part]
    return node.setdefault(part, default)


def tree_to(tree, target):
    """Every tensor of a nested dict/list tree moved or cast by ``.to(target)`` (a device or a
    dtype); other leaves unchanged."""
    if isinstance(tree, dict):
        return {k: tree_to(v, target) for k, v in tree.items()}
    if isinstance(tree, list):
        return [tree_to(v, target) for v in tree]
    return tree.to(target) if torch.is_tensor(tree) else tree


def load(source) -> tuple:
    """(rule name, config, theta as nested dicts/lists of float32 torch tensors) of ``source``;
    one line (FileFormatError) for a damaged or edited file."""
    path = resolve(source)
    check_readable(path)
    header, tensors = read_safetensors(path)
    name = header["rule"]
    version = header.get("semantics", unrecorded_version(str(name)))
    try:
        config = config_for_version(name, header["config"], version)
    except ValueError as err:
        raise FileFormatError(f"{path}: {err}") from None
    return name, config, _tree(path, tensors)
