"""A timing stage waits until no second worker shares the cores (lopt.bench.workers)."""
import os
import subprocess
import sys
import threading
import time

from lopt.bench import workers


def test_a_live_second_worker_is_waited_for_and_a_dead_one_ignored(tmp_path):
    cache = str(tmp_path)
    assert workers.others(cache) == []
    # This process's own marker is not another worker.
    mine = workers.register(cache)
    assert os.path.exists(mine) and workers.others(cache) == []
    # A worker that died without cleaning up leaves a marker with a dead pid.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    open(os.path.join(cache, workers.FOLDER, str(dead.pid)), "w").close()
    assert workers.others(cache) == []
    # A killed worker's pid taken since by a process that is not a worker (a shell's sleep).
    other = subprocess.Popen(["sleep", "30"])
    try:
        open(os.path.join(cache, workers.FOLDER, str(other.pid)), "w").close()
        assert workers.others(cache) == []
    finally:
        other.kill()
        other.wait()
    # A live one, which registers itself and ends after a moment.
    code = ("import sys, time; from lopt.bench import workers; workers.register(sys.argv[1]); "
            "print('up', flush=True); time.sleep(1.5)")
    live = subprocess.Popen([sys.executable, "-c", code, cache], stdout=subprocess.PIPE,
                            text=True)
    assert live.stdout.readline().strip() == "up"
    assert workers.others(cache) == [live.pid]
    said, done = [], threading.Event()
    start = time.time()
    waiter = threading.Thread(target=lambda: (workers.wait_alone(cache, 0.05, said.append),
                                              done.set()))
    waiter.start()
    time.sleep(0.5)
    assert not done.is_set()  # still waiting while the other computes
    live.wait()
    waiter.join(10)
    assert done.is_set() and time.time() - start >= 1.0
    assert len(said) == 1 and str(live.pid) in said[0]
    # The live worker removed its marker on exit.
    assert not os.path.exists(os.path.join(cache, workers.FOLDER, str(live.pid)))


def test_cores_counts_the_cores_a_pinned_process_may_use():
    code = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
            "from lopt.bench import workers; print(workers.cores())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "1"
    assert workers.cores() == len(os.sched_getaffinity(0))
