"""The ``.lopt`` file's format, readable without JAX (``lopt.torch`` reads it too): safetensors
tensors keyed by tree path, a JSON header under ``__metadata__["lopt"]`` naming the rule, its
config, the format version and the semantics version, the tensors' sha256 and the header's
own sha256 over every other header field."""
from __future__ import annotations

import hashlib
import json
import struct

import numpy as np
from safetensors.numpy import load as st_load

from lopt.files.errors import FileFormatError, reading

FORMAT = "lopt-rule"
# 3: the header carries ``header_sha256`` over every other header field (rule, config, extra,
# the tensors' sha256), so an edited config is refused like a flipped bit in theta; files of
# version 2 (tensor checksum only) and 1 (.npz) still load.
VERSION = 3
HEADER_KEY = "lopt"  # the __metadata__ entry holding the JSON header
MAX_HEADER = 100 << 20  # a header past 100 MiB is a damaged length field, not metadata


def digest(tensors: dict) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes: safetensors itself checks
    offsets, not contents, and a flipped bit in theta must not load silently."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        x = tensors[name]
        h.update(f"{name}|{x.dtype.str}|{x.shape}|".encode())
        h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()


def no_constant(name: str):
    """json.loads's hook for NaN and ±Infinity, which no lopt header holds."""
    raise ValueError(f"the header holds {name}, which JSON does not allow")


def header_digest(header: dict) -> str:
    """sha256 of the header's canonical JSON without its own digest: it covers the rule's name
    and config (so the arithmetic a file names), its provenance and the tensors' digest."""
    body = {k: v for k, v in header.items() if k != "header_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"))
                          .encode()).hexdigest()


def read_safetensors(path: str) -> tuple:
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
                            parse_constant=no_constant)
    check_header(path, header)
    try:
        tensors = st_load(raw)
    except Exception as err:  # safetensors raises its own SafetensorError (truncation, offsets)
        raise FileFormatError(f"{path}: damaged tensor data ({str(err).splitlines()[0]})") \
            from None
    if digest(tensors) != header.get("sha256"):
        raise FileFormatError(f"{path}: checksum mismatch: the tensor data is corrupt")
    if header["version"] >= 3 and header.get("header_sha256") != header_digest(header):
        raise FileFormatError(f"{path}: checksum mismatch: the header (rule, config or "
                              "provenance) was changed after the file was written")
    return header, tensors


def check_header(path: str, header) -> None:
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
