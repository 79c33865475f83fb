"""The ``lopt`` command line (DESIGN.md: How users meet it): commands, typed configs, preflight
checks and recipes.

``main`` answers Ctrl-C and SIGTERM from its first instant: while jax and the commands load
(a few seconds) a signal ends the process at once with one line — nothing has been written
yet — and the commands then take the signals over (``lopt.cli.commands``)."""
from __future__ import annotations

import os
import signal
import sys
import threading

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def main(argv=None) -> int:
    """Run ``lopt`` with ``argv`` (the words after it; None: this process's arguments, and
    then the process is the command's: a signal after the command's one line ends it with the
    same exit code, never by the signal itself)."""
    owns_process = argv is None
    words = sys.argv[1:] if argv is None else list(argv)
    command = next((w for w in words if not w.startswith("-")), "")
    main_thread = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, _while_starting(command)) for s in _SIGNALS} \
        if main_thread else {}
    code = None
    try:
        from lopt.cli.commands import main as run  # jax and every command load here

        code = run(words)
        return code
    finally:
        if owns_process and main_thread:
            for s in _SIGNALS:
                signal.signal(s, _exit_with(code))
        else:
            for s, handler in previous.items():
                signal.signal(s, handler)


def _while_starting(command: str):
    def handle(signum, frame):
        what = "interrupted" if signum == signal.SIGINT else \
            f"terminated ({signal.Signals(signum).name})"
        os.write(2, f"lopt{' ' + command if command else ''}: {what} while starting; nothing "
                    "was done\n".encode())
        os._exit(128 + signum)
    return handle


def _exit_with(code):
    """After the command returned: a further signal (during the interpreter's teardown) ends
    the process with the command's own exit code when a signal stopped it."""
    def handle(signum, frame):
        os._exit(code if code is not None and code > 128 else 128 + signum)
    return handle


__all__ = ["main"]
