"""JSON given on the command line, read strictly: one object, no repeated key, bounded depth."""
from __future__ import annotations

import json

from lopt.files.errors import UsageError


class JsonInputError(UsageError):
    """The text is not one acceptable JSON object; the message says why, in one line."""


def _no_repeats(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise JsonInputError(f"key {key!r} is given twice")
        seen[key] = value
    return seen


def json_object(text: str) -> dict:
    """``text`` parsed as a JSON object. A repeated key (which ``json`` would silently resolve
    to its last value) and nesting too deep for the parser are refused, as is anything but
    an object."""
    try:
        value = json.loads(text, object_pairs_hook=_no_repeats)
    except json.JSONDecodeError as err:
        raise JsonInputError(str(err)) from None
    except RecursionError:
        raise JsonInputError("nested too deeply") from None
    if not isinstance(value, dict):
        raise JsonInputError(f"got {text[:60]!r}")
    return value
