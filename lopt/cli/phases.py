"""Which phase a ``lopt`` command is in, so an error is reported by where it came from: a
ValueError while the settings are checked is bad input (one line, exit 2); any other exception
once work has started is lopt's own failure (one line naming the phase and the file that holds
its full traceback, exit 1)."""
from __future__ import annotations

import contextlib
import os
import tempfile
import time
import traceback

CHECKING = "checking the settings"
_current = [CHECKING]


@contextlib.contextmanager
def phase(name: str):
    """Everything inside runs as phase ``name`` (the phase before it is restored after)."""
    previous, _current[0] = _current[0], name
    try:
        yield
    except BaseException as err:
        if not hasattr(err, "lopt_phase"):  # the innermost phase is where it happened
            err.lopt_phase = name
        raise
    finally:
        _current[0] = previous


def current() -> str:
    return _current[0]


def phase_of(err: BaseException) -> str:
    """The phase ``err`` escaped from (the settings' checks when it escaped no phase)."""
    return getattr(err, "lopt_phase", CHECKING)


def reset() -> None:
    _current[0] = CHECKING


def write_traceback(err: BaseException, command: str) -> str:
    """The full traceback of ``err`` in a new file under the temporary folder; its path."""
    fd, path = tempfile.mkstemp(prefix=f"lopt-{command}-traceback-", suffix=".txt")
    with os.fdopen(fd, "w") as f:
        f.write(f"lopt {command}, {time.strftime('%Y-%m-%d %H:%M:%S')}, during "
                f"{phase_of(err)}:\n")
        f.write("".join(traceback.format_exception(type(err), err, err.__traceback__)))
    return path
