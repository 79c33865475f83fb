"""The files of a meta-training run: its log, its lock, stale temporaries, and the check that a
resumed run is the run its checkpoint came from."""
from __future__ import annotations

import fcntl
import json
import os
import shutil

from lopt.files.atomic import TEMPORARY_PREFIX, json_text, write_text
from lopt.files.errors import UsageError

LOCK_NAME = ".lopt-train.lock"


class ResumeMismatch(UsageError):
    """A checkpoint exists but was written by a run with other settings."""


def _fmt(value) -> str:
    return json.dumps(value) if not isinstance(value, str) else repr(value)


# Values renamed since a checkpoint may have been written: the same setting under both names.
RENAMED_VALUES = {"objective": {"eval": "valid"}}


def differing_fields(stored: dict, current: dict) -> list:
    """``"name stored (now current)"`` for every key whose values differ (a missing key counts)."""
    out = []
    for name in sorted(set(stored) | set(current)):
        a, b = stored.get(name, "<unset>"), current.get(name, "<unset>")
        if _normal(_renamed(name, a)) != _normal(_renamed(name, b)):
            out.append(f"{name} {_fmt(a)} (now {_fmt(b)})")
    return out


def _renamed(name, value):
    return RENAMED_VALUES.get(name, {}).get(value, value) if isinstance(value, str) else value


def _normal(value):
    """Tuples and lists compare equal, as they come back from JSON."""
    if isinstance(value, (list, tuple)):
        return [_normal(v) for v in value]
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    return value


class ForeignCheckpoint(ResumeMismatch):
    """A checkpoint written by another run (another rule, rule config or run config): a resume
    passes over it to an older one of this run when there is one."""


# Settings renamed since a checkpoint may have been written (old key -> new): a checkpoint's
# stored run settings are read under the new names, so a rename never refuses a resume.
RENAMED_SETTINGS = {"num_tasks": "num_runs"}


def check_resume(path: str, meta: dict, *, rule_name: str, rule_config: dict,
                 run_config: dict | None, num_steps: int) -> None:
    """Refuse (``ResumeMismatch``, one line) to continue checkpoint ``path`` (metadata ``meta``)
    with another rule, rule config, run config or fewer steps than it already holds."""
    fresh = "resume with the same settings, or start fresh with --no-resume or another --out"
    if meta.get("rule") != rule_name:
        raise ForeignCheckpoint(f"checkpoint {path} holds rule {meta.get('rule')!r}, not "
                             f"{rule_name!r}; {fresh}")
    diffs = [f"rule_config.{d}" for d in differing_fields(meta.get("config") or {},
                                                          rule_config)]
    if run_config is not None and meta.get("run") is not None:
        stored = {RENAMED_SETTINGS.get(k, k): v for k, v in meta["run"].items()}
        diffs += differing_fields(stored, run_config)
    if diffs:
        raise ForeignCheckpoint(f"checkpoint {path} was written by a run with other settings: "
                             f"{'; '.join(diffs)}; {fresh}")
    step = int(meta.get("step", 0))
    if num_steps < step:
        raise ResumeMismatch(f"checkpoint {path} is at outer step {step}: steps may only grow, "
                             f"got {num_steps}; {fresh}")


def trim_log(log_path: str, step: int) -> int:
    """Keep only the log lines of steps before ``step`` (a resumed run recomputes the others)
    and drop lines that do not parse — the torn end of a write cut by a kill or a full disk.
    Returns how many unreadable lines were dropped."""
    if not os.path.exists(log_path):
        return 0
    kept, torn = [], 0
    with open(log_path, "rb") as f:
        for raw in f:
            try:
                record = json.loads(raw)
            except ValueError:
                torn += 1
                continue
            if isinstance(record, dict) and isinstance(record.get("step"), int) and \
                    record["step"] < step:
                kept.append(log_line(record))
    write_text(log_path, "".join(kept))
    return torn


def log_line(record: dict) -> str:
    """One strict-JSON line: non-finite numbers become null."""
    return json_text(record, indent=None) + "\n"


def remove_stale_temporaries(folder: str, prefix: str = TEMPORARY_PREFIX) -> list:
    """Delete the temporary files an interrupted atomic write left in ``folder``."""
    removed = []
    if not os.path.isdir(folder):
        return removed
    for name in os.listdir(folder):
        if name.startswith(prefix):
            path = os.path.join(folder, name)
            try:
                if os.path.isdir(path):
                    shutil.rmtree(path)
                else:
                    os.remove(path)
                removed.append(name)
            except FileNotFoundError:
                pass
    return removed


class FolderLock:
    """An exclusive lock on a run folder (``fcntl.flock`` on a lock file inside it), so two
    runs (``lopt train``, ``lopt bench``) never write one ``--out``; the kernel drops it when
    the process dies."""

    def __init__(self, folder: str):
        self.path = os.path.join(folder, LOCK_NAME)
        self._fd = None

    def __enter__(self):
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
                os.close(fd)
                raise UsageError(f"out folder {os.path.dirname(self.path)} is in use by "
                                 f"another lopt command (pid {holder}, lock {self.path}); "
                                 "wait for it or choose another --out") from None
            # The holder unlinks the file as it lets go: a lock taken on the file it opened
            # just before is a lock on nothing, while a third run locks the fresh file. Only
            # a lock on the file the path still names counts.
            if self._names(fd):
                break
            os.close(fd)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
        except OSError as err:
            # A full disk at launch: leave no empty lock file behind.
            os.remove(self.path)
            os.close(fd)
            raise OSError(err.errno, err.strerror, self.path) from None
        self._fd = fd
        return self

    def _names(self, fd: int) -> bool:
        try:
            here = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)

    def __exit__(self, *exc):
        # Unlink while holding the lock: a run starting now locks a fresh file.
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass
        os.close(self._fd)
        self._fd = None
        return False


def checkpoint_path(out_dir: str) -> str:
    """Where a run in ``out_dir`` checkpoints: the orbax folder ``checkpoints``, or the
    ``checkpoint.npz`` of a run begun by lopt ≤ 0.1, which goes on in that format."""
    legacy = os.path.join(out_dir, "checkpoint.npz")
    return legacy if os.path.isfile(legacy) else os.path.join(out_dir, "checkpoints")
