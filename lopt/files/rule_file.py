"""One portable file per learned optimizer (``.lopt``): safetensors tensors — theta, keyed by
tree path — with a JSON header naming the rule, its config, the format version, a checksum
and provenance. No pickle: numpy, PyTorch or any safetensors reader opens it. Files of format
version 1 (``.npz`` archives, lopt ≤ 0.1) still load."""
from __future__ import annotations

import hashlib
import json
import struct

import jax
import numpy as np
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from lopt.files.atomic import write_atomically
from lopt.files.errors import FileFormatError, check_readable, reading
from lopt.files.pytree_file import arrays_to_tree, load_pytree, read_metadata
from lopt.rules import make_rule
from lopt.rules.base import UpdateRule, check_rule, theta_mismatch
from lopt.rules.semantics import config_for_version, current_version, unrecorded_version

FORMAT = "lopt-rule"
# 3: the header carries ``header_sha256`` over every other header field (rule, config, extra,
# the tensors' sha256), so an edited config is refused like a flipped bit in theta; files of
# version 2 (tensor checksum only) and 1 (.npz) still load.
VERSION = 3
HEADER_KEY = "lopt"  # the __metadata__ entry holding the JSON header
MAX_HEADER = 100 << 20  # a header past 100 MiB is a damaged length field, not metadata


def save(path: str, rule: UpdateRule, theta, extra: dict | None = None) -> None:
    """Write ``rule`` (registry name and config) and ``theta`` to ``path`` atomically.

    ``theta`` must have the structure, shapes and dtypes of ``rule.init_meta``'s output."""
    check_rule(rule)
    problem = theta_mismatch(rule, theta)
    if problem:
        raise ValueError(f"theta does not match rule {rule.name!r}: {problem}")
    tensors = {jax.tree_util.keystr(p): np.ascontiguousarray(jax.device_get(x))
               for p, x in jax.tree_util.tree_flatten_with_path(theta)[0]}
    for name, x in tensors.items():
        # A NaN theta saved is a rule that poisons every run it is used in.
        if np.issubdtype(x.dtype, np.inexact) and not np.all(np.isfinite(x)):
            raise ValueError(f"theta{name} holds NaN or inf; a rule file keeps only finite "
                             "meta-parameters")
    header = {"format": FORMAT, "version": VERSION, "rule": rule.name, "config": rule.config,
              "semantics": current_version(rule.name), "extra": extra or {},
              "sha256": _digest(tensors)}
    header["header_sha256"] = _header_digest(header)
    data = st_save(tensors, metadata={HEADER_KEY: json.dumps(header)})
    write_atomically(path, lambda f: f.write(data), suffix=".lopt")


def _digest(tensors: dict) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes: safetensors itself checks
    offsets, not contents, and a flipped bit in theta must not load silently."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        x = tensors[name]
        h.update(f"{name}|{x.dtype.str}|{x.shape}|".encode())
        h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()


def _no_constant(name: str):
    """json.loads's hook for NaN and ±Infinity, which no lopt header holds."""
    raise ValueError(f"the header holds {name}, which JSON does not allow")


def _header_digest(header: dict) -> str:
    """sha256 of the header's canonical JSON without its own digest: it covers the rule's name
    and config (so the arithmetic a file names), its provenance and the tensors' digest."""
    body = {k: v for k, v in header.items() if k != "header_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"))
                          .encode()).hexdigest()


def _is_npz(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"PK"


def _read_safetensors(path: str) -> tuple:
    """(header dict, tensors dict) of a version-2 file, every damage as one line."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise FileFormatError(f"{path}: truncated ({len(raw)} bytes) or not a lopt rule file")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > min(len(raw) - 8, MAX_HEADER):
        raise FileFormatError(f"{path}: not a lopt rule file, or truncated (header length {n} "
                              f"of a {len(raw)}-byte file)")
    with reading(path, "safetensors file"):
        st_header = json.loads(raw[8:8 + n].decode())
    if not isinstance(st_header, dict) or not isinstance(st_header.get("__metadata__"), dict) \
            or HEADER_KEY not in st_header["__metadata__"]:
        raise FileFormatError(f"{path}: a safetensors file without a lopt header; not a saved "
                              "lopt rule")
    with reading(path, "lopt rule header"):
        header = json.loads(st_header["__metadata__"][HEADER_KEY],
                            parse_constant=_no_constant)
    _check_header(path, header)
    try:
        tensors = st_load(raw)
    except Exception as err:  # safetensors raises its own SafetensorError (truncation, offsets)
        raise FileFormatError(f"{path}: damaged tensor data ({str(err).splitlines()[0]})") \
            from None
    if _digest(tensors) != header.get("sha256"):
        raise FileFormatError(f"{path}: checksum mismatch: the tensor data is corrupt")
    if header["version"] >= 3 and header.get("header_sha256") != _header_digest(header):
        raise FileFormatError(f"{path}: checksum mismatch: the header (rule, config or "
                              "provenance) was changed after the file was written")
    return header, tensors


def _check_header(path: str, header) -> None:
    if not isinstance(header, dict):
        raise FileFormatError(f"{path}: the lopt header must be a JSON object, got "
                              f"{type(header).__name__}")
    if header.get("format") != FORMAT:
        raise FileFormatError(f"{path}: not a saved lopt rule (format {header.get('format')!r})")
    version = header.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise FileFormatError(f"{path}: format version must be a positive integer, got "
                              f"{version!r}")
    if version > VERSION:
        raise FileFormatError(f"{path}: written by a newer lopt (format version {version}; "
                              f"this lopt reads up to {VERSION}); upgrade lopt")
    for key, kind in (("rule", str), ("config", dict), ("extra", dict)):
        if key not in header:
            raise FileFormatError(f"{path}: the header has no {key!r}")
        if not isinstance(header[key], kind):
            raise FileFormatError(f"{path}: header {key!r} must be a {kind.__name__}, got "
                                  f"{type(header[key]).__name__}")


def load_metadata(path: str) -> dict:
    """The header of a saved rule: format, version, rule, config and its ``extra`` record."""
    check_readable(path)
    if _is_npz(path):
        meta = read_metadata(path)
        _check_header(path, meta)
        return meta
    return _read_safetensors(path)[0]


def load(path: str):
    """Read a file written by :func:`save` (either format version); returns ``(rule, theta)``.
    Anything wrong with the file is a ``FileFormatError`` (a ValueError) naming it."""
    check_readable(path)
    if _is_npz(path):
        header, tensors = load_metadata(path), None
    else:
        header, tensors = _read_safetensors(path)
    # A file computes what it computed when it was made: under the config of its recorded
    # semantics version (files from before the record: what lopt computed for them then).
    semantics = header.get("semantics", unrecorded_version(str(header["rule"])))
    if not isinstance(semantics, int) or isinstance(semantics, bool) or semantics < 1:
        raise FileFormatError(f"{path}: header 'semantics' must be a positive integer, got "
                              f"{semantics!r}")
    try:
        config = config_for_version(header["rule"], header["config"], semantics)
    except ValueError as err:
        raise FileFormatError(f"{path}: {err}") from None
    try:
        rule = make_rule(header["rule"], **config)
        # The rule's own meta-parameters in the active default float dtype (float64 under
        # jax_enable_x64): theta is cast to it on load, deliberately, whatever the file stores.
        template = jax.eval_shape(rule.init_meta, jax.random.PRNGKey(0))
    except (ValueError, TypeError, OverflowError, MemoryError) as err:
        raise FileFormatError(f"{path}: names rule {header['rule']!r} with a config this lopt "
                              f"cannot build ({str(err).splitlines()[0]})") from None
    if tensors is None:
        theta = load_pytree(path, template, cast_floats=True)
    else:
        theta = arrays_to_tree(path, tensors, template, cast_floats=True)
    for p, x in jax.tree_util.tree_flatten_with_path(theta)[0]:
        # save refuses these; a file written otherwise would poison every run it is used in
        if not bool(jax.numpy.all(jax.numpy.isfinite(x))):
            raise FileFormatError(f"{path}: theta{jax.tree_util.keystr(p)} holds NaN or inf; a "
                                  "rule file keeps only finite meta-parameters")
    return rule, theta
