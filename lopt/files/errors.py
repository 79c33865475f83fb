"""File errors: one ``FileFormatError`` line naming the file and what is wrong with it."""
from __future__ import annotations

import contextlib
import os
import zipfile


class UsageError(ValueError):
    """Input lopt cannot act on as given (a setting out of range, a file that is not what it
    should be, a machine without what was asked for); the message names it. The CLI reports it
    in one line with exit code 2, wherever it is raised; any other exception mid-run is lopt's
    own failure (lopt.cli.phases)."""


class FileFormatError(UsageError):
    """A file that cannot be read as what it should be; the message names it and the problem."""


def check_readable(path: str) -> None:
    """One line unless ``path`` is an existing, non-empty regular file."""
    if not os.path.exists(path):
        raise FileFormatError(f"{path}: no such file")
    if os.path.isdir(path):
        raise FileFormatError(f"{path}: is a folder, not a file")
    if os.path.getsize(path) == 0:
        raise FileFormatError(f"{path}: is empty")


@contextlib.contextmanager
def reading(path: str, what: str = "lopt file"):
    """Turns whatever a damaged or foreign file makes the readers raise into one
    ``FileFormatError`` naming ``path``."""
    check_readable(path)
    try:
        yield
    except FileFormatError:
        raise
    except (zipfile.BadZipFile, EOFError, KeyError, ValueError, OSError, TypeError,
            UnicodeDecodeError, RecursionError, OverflowError) as err:
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise FileFormatError(f"{path}: not a readable {what} ({detail})") from None
