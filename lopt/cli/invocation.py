"""The command being run: its words, when it started and the code it runs — the provenance of
everything it writes."""
from __future__ import annotations

import dataclasses
import time

from lopt.files.provenance import git_commit


@dataclasses.dataclass(frozen=True)
class Invocation:
    line: str
    start: float
    code: dict

    @classmethod
    def now(cls, words) -> "Invocation":
        return cls(line=" ".join(["lopt"] + list(words)), start=time.time(), code=git_commit())
