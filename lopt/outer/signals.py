"""Signals turned into exceptions in the main thread, never lost inside a garbage-collector
callback (jax registers one; an exception raised there is printed as "Exception ignored" and
the program carries on as if no signal had come)."""
from __future__ import annotations

import gc
import os
import signal
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
REDELIVER_AFTER_S = 0.05


def in_gc_callback(frame) -> bool:
    """Whether ``frame`` (a signal handler's) runs inside one of ``gc.callbacks``."""
    codes = {getattr(cb, "__code__", None) for cb in gc.callbacks}
    while frame is not None:
        if frame.f_code in codes:
            return True
        frame = frame.f_back
    return False


def raise_in_main(signum: int, frame, error: BaseException) -> None:
    """Raise ``error`` from a signal handler, or, when the signal came inside a gc callback,
    send the same signal again shortly, to be handled outside it."""
    if in_gc_callback(frame):
        threading.Timer(REDELIVER_AFTER_S, os.kill, (os.getpid(), signum)).start()
        return
    raise error
