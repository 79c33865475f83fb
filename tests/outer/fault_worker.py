"""A meta-training process for the fault tests to kill: ``python fault_worker.py DIR MODE``.

MODE ``run`` trains until killed, a checkpoint every step; ``stall_checkpoint`` does the same
but its third checkpoint write stops after every array is in the temporary folder and before
the rename that commits it, and says so in DIR/stalled, so the test can kill it mid-write."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))

from fault_setup import run  # noqa: E402


def main(folder, mode):
    if mode == "stall_checkpoint":
        from orbax.checkpoint._src.path import atomicity

        cls = atomicity.AtomicRenameTemporaryPath
        real, calls = cls.finalize, []

        async def finalize(self, *args, **kwargs):
            # Only the whole step's folder (its items finalize first) stalls.
            if str(self.get()).rsplit("/", 1)[-1].split(".")[0].isdigit():
                calls.append(1)
                if len(calls) == 3:
                    open(os.path.join(folder, "stalled"), "w").close()
                    time.sleep(600)
            return await real(self, *args, **kwargs)

        cls.finalize = finalize
    run(folder, 10**6)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
