"""A meta-training process for the fault tests to kill: ``python fault_worker.py DIR MODE``.

MODE ``run`` trains until killed, a checkpoint every step; ``stall_checkpoint`` does the same
but its third checkpoint write stops after the temporary file is complete and before the
rename, and says so in DIR/stalled, so the test can kill it mid-write."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

from fault_setup import run  # noqa: E402


def main(folder, mode):
    if mode == "stall_checkpoint":
        import lopt.checkpoint as ckpt

        real, calls = ckpt.np.savez, []

        def savez(f, **arrays):
            real(f, **arrays)
            calls.append(1)
            if len(calls) == 3:
                f.flush()
                open(os.path.join(folder, "stalled"), "w").close()
                time.sleep(600)

        ckpt.np.savez = savez
    run(folder, 10**6)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
