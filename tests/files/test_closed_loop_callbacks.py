"""After a failed checkpoint write, the "Event loop is closed" errors of tensorstore writes that
finish later are not printed beside lopt's one-line report (they were, under load, in the
full-disk test); any other unraisable exception still is. In a fresh process: the hook is the
interpreter's."""
import subprocess
import sys

SCRIPT = """
import gc
from lopt.files.checkpoints import _quiet_closed_loop_callbacks

class Raises:
    def __init__(self, err):
        self.err = err
    def __del__(self):
        raise self.err

_quiet_closed_loop_callbacks()
_quiet_closed_loop_callbacks()  # installed once, not wrapped twice
Raises(RuntimeError("Event loop is closed"))
gc.collect()
Raises(ValueError("a real problem"))
gc.collect()
"""


def test_only_closed_loop_errors_are_dropped():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "Event loop is closed" not in out.stderr
    assert "ValueError: a real problem" in out.stderr
    assert out.stderr.count("Traceback") <= 1
