"""The coordination service of a ``lopt train --distributed`` job in a process of its own, so
that process 0 dying does not take it down with it.

jax hosts the service inside process 0. When process 0 dies, every other process's client
finds the service gone and jaxlib aborts it from a C++ thread (a fatal log, SIGABRT) — often
before the survivor's own failed collective or ``lopt.cli.liveness`` can end it with lopt's
one line; jaxlib's hook for that case (``missed_heartbeat_callback``) cannot be used from
Python (it passes a status nanobind cannot convert, and terminates). Here the service runs in
a child of process 0, in a session of its own (a terminal's Ctrl-C does not reach it), and
outlives its parent by ``GRACE`` seconds: long enough for the survivors to notice the dead
peer through their own channels (a collective's error at once, the peer watch within
``SILENCE_LIMIT``), and for a job that ends normally to finish its shutdown barrier.

    python -m lopt.cli.coordination_host BIND_ADDRESS NUM_PROCESSES HEARTBEAT_SECONDS
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

GRACE = 20.0  # > liveness.SILENCE_LIMIT (10 s), so a survivor's own watch speaks first
READY = "ready"


def start(bind_address: str, num_processes: int, heartbeat_seconds: int):
    """The service host, started and listening (it says so on stdout once bound), or None
    when it could not start (the port is taken). Its C++ logs (a peer's missed heartbeats,
    which the survivors report in lopt's own words) are not the job's output: dropped."""
    proc = subprocess.Popen([sys.executable, "-m", "lopt.cli.coordination_host", bind_address,
                             str(num_processes), str(heartbeat_seconds)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    line = proc.stdout.readline().strip()
    if line != READY:
        proc.kill()
        proc.wait()
        return None
    return proc


def main(argv: list) -> int:
    bind_address, num_processes, heartbeat = argv[0], int(argv[1]), int(argv[2])
    parent = os.getppid()
    from jax._src.lib import _jax

    # kept referenced: the service stops when the object is collected
    service = _jax.get_distributed_runtime_service(bind_address, num_processes,
                                                   heartbeat_timeout=heartbeat)
    print(READY, flush=True)
    while os.getppid() == parent:
        time.sleep(0.5)
    time.sleep(GRACE)
    del service
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
