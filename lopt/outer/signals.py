"""Signals turned into exceptions in the main thread, never lost where Python swallows
exceptions: inside a garbage-collector callback (jax registers one), a finalizer or a weakref
callback, an exception is printed as "Exception ignored" and the program carries on as if no
signal had come. Such a swallowed signal is sent again, to be raised outside."""
from __future__ import annotations

import os
import signal
import sys
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
REDELIVER_AFTER_S = 0.05


def raise_in_main(signum: int, frame, error: BaseException) -> None:
    """Raise ``error`` (which carries ``signum``) from a signal handler; should Python swallow
    it, ``sys.unraisablehook`` sends the same signal again shortly."""
    _watch_unraisable()
    if getattr(error, "signum", None) is None:
        error.signum = signum
    raise error


def _watch_unraisable() -> None:
    if getattr(sys.unraisablehook, "lopt_redelivers", False):
        return
    previous = sys.unraisablehook

    def hook(unraisable) -> None:
        signum = getattr(unraisable.exc_value, "signum", None)
        if isinstance(unraisable.exc_value, KeyboardInterrupt) and signum is not None:
            # not printed: the signal is answered once it is raised again, in one line
            threading.Timer(REDELIVER_AFTER_S, os.kill, (os.getpid(), signum)).start()
            return
        previous(unraisable)

    hook.lopt_redelivers = True
    sys.unraisablehook = hook
