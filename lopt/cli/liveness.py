"""Peer liveness for a ``lopt train --distributed`` job: a process that stops answering (a
SIGSTOP, a hung host) ends the job in one line within ``SILENCE_LIMIT`` seconds.

A killed peer fails the survivors' next collective at once; a stopped one does not: its
sockets stay open, every collective waits, and jax's coordination service aborts the
survivors in C++ (a stack trace) when the peer's heartbeats have been missing for the
heartbeat timeout (30 s here). Timing the outer step cannot tell a stopped peer from a slow
step, so each process runs a thread that counts in the job's key-value store once a second,
whatever its main thread is doing (XLA releases the GIL while it computes or compiles), and
reads the others' counters: a counter that has not moved for ``SILENCE_LIMIT`` seconds is a
process that is not running. A process done with training says so first, so the end of a
job is never taken for a hang.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import Callable, Optional

SILENCE_LIMIT = 10.0  # well under the coordination service's 30 s heartbeat timeout
BEAT = 1.0
_ALIVE, _DONE = "lopt/alive/", "lopt/done/"


def _client():
    from jax._src import distributed  # the client jax.distributed.initialize made

    return distributed.global_state.client


class PeerWatch:
    """Counts for this process and watches every other; ``on_silent(process, seconds)`` is
    called once, from a watcher thread, when a peer (or the coordinator's key-value store)
    has been silent for ``limit`` seconds."""

    def __init__(self, process_id: int, num_processes: int, on_silent: Callable,
                 limit: float = SILENCE_LIMIT, beat: float = BEAT, client=None):
        self.process_id, self.peers = process_id, [p for p in range(num_processes)
                                                   if p != process_id]
        self.on_silent, self.limit, self.beat = on_silent, limit, beat
        self.client = client if client is not None else _client()
        now = time.monotonic()
        self.last_change = {p: now for p in self.peers}
        self.last_value: dict = {}
        self.last_round = now
        self.done: set = set()
        self.stopped = threading.Event()

    def start(self) -> "PeerWatch":
        threading.Thread(target=self._count, daemon=True, name="lopt-peer-count").start()
        threading.Thread(target=self._judge, daemon=True, name="lopt-peer-judge").start()
        return self

    def finish(self) -> None:
        """This process is past training: stop judging, and tell the others not to wait."""
        if self.stopped.is_set():
            return
        self.stopped.set()
        try:
            self.client.key_value_set(_DONE + str(self.process_id), "1", allow_overwrite=True)
        except Exception:  # noqa: BLE001 - a job already ending needs no more from the store
            pass

    def _count(self) -> None:
        count = 0
        while not self.stopped.is_set():
            count += 1
            try:
                self.client.key_value_set(_ALIVE + str(self.process_id), str(count),
                                          allow_overwrite=True)
                for p in self.peers:
                    if p in self.done:
                        continue
                    if self._get(_DONE + str(p)) is not None:
                        self.done.add(p)
                    value = self._get(_ALIVE + str(p))
                    if value is not None and value != self.last_value.get(p):
                        self.last_value[p], self.last_change[p] = value, time.monotonic()
                self.last_round = time.monotonic()
            except Exception:  # noqa: BLE001 - an unreachable store is judged by its silence
                pass
            self.stopped.wait(self.beat)

    def _get(self, key: str) -> Optional[str]:
        try:
            return self.client.key_value_try_get(key)
        except Exception as err:  # noqa: BLE001 - jaxlib raises its own error for a missing key
            if "NOT_FOUND" in str(err) or "not found" in str(err).lower():
                return None
            raise

    def _judge(self) -> None:
        while not self.stopped.wait(min(self.beat, self.limit) / 2):
            now = time.monotonic()
            if self.process_id != 0 and now - self.last_round > self.limit:
                self._fire(0, now - self.last_round)
                return
            for p in self.peers:
                if p not in self.done and now - self.last_change[p] > self.limit:
                    self._fire(p, now - self.last_change[p])
                    return

    def _fire(self, process: int, seconds: float) -> None:
        if not self.stopped.is_set():
            self.on_silent(process, seconds)


def exit_on_silence(process_id: int, out: str, exit_code: int) -> Callable:
    """An ``on_silent`` that ends this process with one line naming the silent process."""
    def end(process: int, seconds: float) -> None:
        who = "the coordinator (process 0)" if process == 0 and process_id != 0 \
            else f"process {process}"
        sys.stderr.write(f"lopt train: failed: {who} of the distributed job has not answered "
                         f"for {seconds:.0f} s (stopped or hung); this process {process_id} "
                         f"ends; end every process, then run the same command again to resume "
                         f"from the last checkpoint in {out}\n")
        sys.stderr.flush()
        os._exit(exit_code)
    return end
