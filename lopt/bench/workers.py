"""Second workers on a shared stage cache (``lopt bench SUITE --cache DIR --reverse``), known
by a file per process under ``DIR/.workers/``, so that a stage that times something waits
until it has the machine's cores to itself: a timing taken while another worker computes is
one of the two workers' shares, not the machine's.
"""
from __future__ import annotations

import atexit
import os
import sys
import time
from typing import Callable, List

FOLDER = ".workers"


def _folder(cache: str) -> str:
    return os.path.join(cache, FOLDER)


def register(cache: str) -> str:
    """Mark this process as a worker on ``cache`` until it exits; returns the marker's path."""
    os.makedirs(_folder(cache), exist_ok=True)
    path = os.path.join(_folder(cache), str(os.getpid()))
    with open(path, "w") as f:
        f.write(" ".join(sys.argv))

    def remove():
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    atexit.register(remove)
    return path


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live Python process (a worker killed outright leaves its marker,
    and its pid may since have gone to an unrelated process)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"python" in f.read()
    except OSError:  # no /proc here: the pid's existence is all there is to go on
        return True


def others(cache: str) -> List[int]:
    """The pids of the live workers registered on ``cache`` other than this process (a marker
    left by a process that died without cleaning up is ignored)."""
    try:
        names = os.listdir(_folder(cache))
    except FileNotFoundError:
        return []
    pids = [int(n) for n in names if n.isdigit() and int(n) != os.getpid()]
    return sorted(p for p in pids if _alive(p))


def cores() -> int:
    """The CPU cores this process may run on (fewer than the machine's under ``taskset``)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def wait_alone(cache: str, poll_s: float = 30.0, say: Callable[[str], None] = print) -> None:
    """Return once no other worker is registered on ``cache`` and alive; says once what it
    waits for."""
    waiting = others(cache)
    if waiting:
        say(f"waiting for the other worker(s) on {cache} (pid {', '.join(map(str, waiting))}) "
            "to end before timing")
    while waiting:
        time.sleep(poll_s)
        waiting = others(cache)
