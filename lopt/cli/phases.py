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


@contextlib.contextmanager
def phase(name: str):
    """An exception escaping the block is marked as raised during phase ``name`` (the innermost
    phase wins); one that escapes no phase was raised while the settings were checked."""
    try:
        yield
    except BaseException as err:
        if not hasattr(err, "lopt_phase"):
            try:
                err.lopt_phase = name
            except (AttributeError, TypeError):  # an exception type without attributes
                pass
        raise


def phase_of(err: BaseException) -> str:
    """The phase ``err`` escaped from (the settings' checks when it escaped no phase)."""
    return getattr(err, "lopt_phase", CHECKING)


def write_traceback(err: BaseException, command: str) -> str:
    """The full traceback of ``err`` in a new file under the temporary folder; its path."""
    fd, path = tempfile.mkstemp(prefix=f"lopt-{command}-traceback-", suffix=".txt")
    with os.fdopen(fd, "w") as f:
        f.write(f"lopt {command}, {time.strftime('%Y-%m-%d %H:%M:%S')}, during "
                f"{phase_of(err)}:\n")
        f.write("".join(traceback.format_exception(type(err), err, err.__traceback__)))
    return path
