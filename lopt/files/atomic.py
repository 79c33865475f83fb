"""The one atomic write and the one strict-JSON writer every lopt file goes through."""
from __future__ import annotations

import json
import math
import os
import tempfile
from typing import Callable

TEMPORARY_PREFIX = ".tmp-"  # what an interrupted write leaves; run folders clean these up


def write_atomically(path: str, write: Callable, suffix: str = "", mode: str = "wb") -> None:
    """``write(f)`` into a temp file in ``path``'s folder, fsynced, then renamed to ``path``, so
    a crash mid-write leaves the previous file intact (and at worst a stale ``.tmp-`` file)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=TEMPORARY_PREFIX, suffix=suffix)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes owner-only files; keep the usual mode
        os.replace(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.remove(tmp)
        if isinstance(err, OSError) and err.errno is not None and err.filename is None:
            # Name the file a failed write (a full disk) was for.
            raise OSError(err.errno, err.strerror, path) from None
        raise


def write_text(path: str, text: str) -> None:
    """``text`` into ``path``, atomically."""
    write_atomically(path, lambda f: f.write(text), mode="w")


def strict(value):
    """``value`` with every non-finite float (NaN, ±inf) replaced by None, so it is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict(v) for v in value]
    return value


def json_text(payload, indent: int | None = 1) -> str:
    """``payload`` as strict JSON text (non-finite numbers as null)."""
    return json.dumps(strict(payload), indent=indent, allow_nan=False)


def write_json(path: str, payload, indent: int | None = 1) -> None:
    """``payload`` as strict JSON (non-finite numbers as null), written atomically."""
    write_text(path, json_text(payload, indent) + "\n")
