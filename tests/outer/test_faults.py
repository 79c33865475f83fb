"""Meta-training survives being killed, a full disk and Ctrl-C, and resumes bit for bit."""
import errno
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import optax
import pytest

from lopt.files.checkpoints import Checkpoints, stale_temporaries
from lopt.outer import train

sys.path.insert(0, os.path.dirname(__file__))
from fault_setup import EST, FAMILY, RULE, run  # noqa: E402

WORKER = os.path.join(os.path.dirname(__file__), "fault_worker.py")


def _log(folder):
    with open(os.path.join(folder, "log.jsonl")) as f:
        return [json.loads(line) for line in f]


def _assert_same_run(a, b):
    for x, y in zip(jax.tree.leaves(a.state), jax.tree.leaves(b.state)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _wait_for(condition, proc, seconds=120):
    end = time.time() + seconds
    while not condition():
        assert proc.poll() is None, proc.stderr.read()
        assert time.time() < end, "the worker never got there"
        time.sleep(0.05)


@pytest.mark.parametrize("mode", ["run", "stall_checkpoint"])
def test_kill_9_then_resume_is_bit_identical(tmp_path, mode):
    """kill -9 between steps, or while a checkpoint's temporary folder is written but not yet
    renamed: the checkpoints on disk are whole, the stale temporary is removed, and the
    resumed run equals one that was never interrupted, log included."""
    folder = str(tmp_path / "killed")
    ckpt = os.path.join(folder, "checkpoints")
    os.makedirs(folder)
    proc = subprocess.Popen([sys.executable, WORKER, folder, mode], stderr=subprocess.PIPE,
                            text=True)
    try:
        if mode == "run":
            _wait_for(lambda: os.path.exists(os.path.join(folder, "log.jsonl"))
                      and len(open(os.path.join(folder, "log.jsonl")).readlines()) >= 5, proc)
        else:
            _wait_for(lambda: os.path.exists(os.path.join(folder, "stalled")), proc)
            in_flight = stale_temporaries(ckpt)
            assert in_flight
            # Reading a busy run's checkpoints (what a refused second `lopt train` or a
            # `lopt eval` does) leaves the folder the job is writing alone.
            reader = Checkpoints(ckpt)
            assert reader.latest_step() == 2 and reader.metadata()["step"] == 2
            time.sleep(0.5)
            assert stale_temporaries(ckpt) == in_flight and proc.poll() is None
    finally:
        proc.kill()
        proc.wait()
    at = Checkpoints(ckpt).latest_step()
    assert at >= 1 and (mode == "run" or at == 2)
    resumed = run(folder, at + 3)
    assert not any("tmp" in n for n in os.listdir(ckpt))
    reference = run(str(tmp_path / "reference"), at + 3)
    _assert_same_run(reference, resumed)
    assert _log(folder) == _log(str(tmp_path / "reference"))


def test_full_disk_during_a_log_append_then_resume(tmp_path, monkeypatch):
    """The disk fills mid-line: the run stops with the OSError, leaving a torn last line; the
    resume drops it and continues exactly."""
    import builtins

    folder = str(tmp_path / "full")
    real_open = builtins.open

    class HalfWrites:
        def __init__(self, f):
            self.f, self.lines = f, 0

        def write(self, text):
            self.lines += 1
            if self.lines == 4:
                self.f.write(text[: len(text) // 2])
                self.f.flush()
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(text)

        def __getattr__(self, name):
            return getattr(self.f, name)

    def full_disk_open(path, mode="r", *a, **k):
        f = real_open(path, mode, *a, **k)
        return HalfWrites(f) if str(path).endswith("log.jsonl") and "a" in mode else f

    # lopt.outer.train is also the name of the function: patch the module itself.
    monkeypatch.setattr(sys.modules["lopt.outer.train"], "open", full_disk_open, raising=False)
    with pytest.raises(OSError, match="No space"):
        run(folder, 8)
    monkeypatch.undo()
    lines = open(os.path.join(folder, "log.jsonl")).read().splitlines()
    assert len(lines) == 4 and not lines[-1].endswith("}")  # the torn line is there
    resumed = run(folder, 8)
    reference = run(str(tmp_path / "reference"), 8)
    _assert_same_run(reference, resumed)
    assert _log(folder) == _log(str(tmp_path / "reference"))


@pytest.mark.parametrize("signum,code,said", [
    (signal.SIGINT, 130, "interrupted"),
    # What schedulers and preemptible VMs send before killing: the same, exit 128 + 15.
    (signal.SIGTERM, 143, "terminated (SIGTERM)")])
def test_ctrl_c_or_sigterm_writes_a_checkpoint_and_exits_with_one_line(tmp_path, signum, code,
                                                                       said):
    out = str(tmp_path / "run")
    proc = subprocess.Popen(
        [sys.executable, "-m", "lopt", "train", "--task", "quadratic", "--steps", "1000000",
         "--num-runs", "4", "--truncation", "3", "--horizon", "8", "--rule-config",
         '{"hidden": 4, "layers": 1}', "--checkpoint-every", "1000000", "--no-progress",
         "--out", out], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = os.path.join(out, "train_log.jsonl")
    _wait_for(lambda: os.path.exists(log) and len(open(log).readlines()) >= 3, proc)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code
    assert len(err.strip().splitlines()) == 1, err
    step = Checkpoints(os.path.join(out, "checkpoints")).latest_step()
    assert f"{said} after outer step {step}; checkpoint saved to" in err
    assert [json.loads(line)["step"] for line in open(log)] == list(range(step))
    assert not os.path.exists(os.path.join(out, ".lopt-train.lock"))


def test_an_overflowing_theta_skips_the_step(tmp_path):
    """A finite meta-gradient times a meta-learning rate past float32's range (1e39, as
    `--meta-lr 1e300` once passed validation) gives a non-finite theta: the new theta is
    checked, the step skipped, and theta and the optimizer state are kept."""
    result = train(RULE, FAMILY, EST, num_steps=2, seed=7, progress=False,
                   meta_optimizer=optax.sgd(1e39), log_path=str(tmp_path / "log.jsonl"))
    theta0 = RULE.init_meta(jax.random.split(jax.random.PRNGKey(7), 3)[0])
    for a, b in zip(jax.tree.leaves(theta0), jax.tree.leaves(result.theta)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    records = [json.loads(line) for line in open(tmp_path / "log.jsonl")]
    assert [r["skipped"] for r in records] == [1, 1]
    assert all(np.isfinite(r["grad_norm"]) and r["grad_norm"] > 0.1 for r in records)


def test_a_run_whose_every_step_is_skipped_exits_1_with_one_line(tmp_path, capsys,
                                                                   monkeypatch):
    from lopt.cli import main

    monkeypatch.setattr("lopt.cli.training.default_meta_optimizer",
                        lambda lr, clip: optax.sgd(float("inf")))
    argv = ["train", "--task", "quadratic", "--steps", "2", "--num-runs", "4",
            "--truncation", "3", "--horizon", "8", "--rule-config",
            '{"hidden": 4, "layers": 1}', "--no-progress", "--out", str(tmp_path / "r")]
    # The same command again resumes a finished run: still every step skipped, still no rule,
    # also when the log that recorded the skips was deleted in between (issue 37, item 10).
    for attempt in range(3):
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 1 and len(err.strip().splitlines()) == 1, err
        assert "theta is still its initial value after 2 outer steps" in err
        assert not os.path.exists(tmp_path / "r" / "l2l_lstm.lopt")
        if attempt == 1:
            os.remove(tmp_path / "r" / "train_log.jsonl")


def test_a_second_run_on_one_out_folder_is_refused(tmp_path, capsys):
    from lopt.cli import main
    from lopt.files.run_folder import FolderLock

    out = str(tmp_path / "busy")
    os.makedirs(out)
    with FolderLock(out):
        code = main(["train", "--task", "quadratic", "--steps", "2", "--out", out])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"out folder {out} is in use by another lopt command (pid {os.getpid()}" in err
    assert os.listdir(out) == []


def _endless_two_process_job(out: str) -> list:
    """Both processes of a `lopt train --distributed` job that would run for days, once
    process 0 has logged 8 outer steps."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        coordinator = f"127.0.0.1:{s.getsockname()[1]}"
    procs = [subprocess.Popen(
        [sys.executable, "-m", "lopt", "train", "--task", "quadratic", "--steps", "1000000",
         "--num-runs", "4", "--truncation", "3", "--horizon", "8", "--rule-config",
         '{"hidden": 4, "layers": 1}', "--checkpoint-every", "1000000", "--no-progress",
         "--out", out, "--distributed", "--coordinator", coordinator, "--num-processes", "2",
         "--process-id", str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)]
    log = os.path.join(out, "train_log.jsonl")
    try:
        _wait_for(lambda: os.path.exists(log) and len(open(log).readlines()) >= 8, procs[0],
                  seconds=180)
    except BaseException:
        for p in procs:
            p.kill()
            p.wait()
        raise
    return procs


@pytest.mark.devices
@pytest.mark.parametrize("killed", [1, 0])
def test_a_dead_process_gives_the_survivor_one_line_not_a_hang(tmp_path, killed):
    """Two `lopt train --distributed` processes; one is killed mid-run — process 1, or process
    0, the coordinator. The survivor's next collective (a step's all-reduce) fails, and it
    exits 1 within seconds with one line saying what happened, instead of waiting for the dead
    peer and aborting with coordination-service logs. With process 0 killed this failed on
    jax's own hosting of the service (its client aborted the survivor in C++ with SIGABRT, 3 of
    5 trials under load): process 0 now hosts it in a process of its own."""
    out = str(tmp_path / "run")
    procs = _endless_two_process_job(out)
    survivor = procs[1 - killed]
    try:
        procs[killed].kill()
        start = time.time()
        _, err = survivor.communicate(timeout=60)
        assert time.time() - start < 30
    finally:
        for p in procs:
            p.kill()
            p.wait()
    lines = [line for line in err.strip().splitlines() if not line.startswith("[Gloo]")]
    assert survivor.returncode == 1
    # whichever notices first: the step's all-reduce, or (process 0 gone) the coordination
    # service's error poll
    assert len(lines) == 1 and "another process of the distributed job stopped" in lines[0], err
    assert "Traceback" not in err and "Check failure" not in err


def test_a_second_signal_abandons_the_step_with_one_line_and_the_signal_s_code(monkeypatch,
                                                                               capsys):
    from lopt.cli import main
    from lopt.outer.train import Abandoned, _StopOnSignal

    before = signal.getsignal(signal.SIGINT)  # pytest-xdist workers ignore SIGINT
    with _StopOnSignal() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
        assert stop.requested == signal.SIGTERM
        with pytest.raises(Abandoned) as raised:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.01)
    assert raised.value.signum == signal.SIGINT
    assert signal.getsignal(signal.SIGINT) is before

    def abandoned(cfg, invocation):
        raise Abandoned(signal.SIGTERM)

    monkeypatch.setattr("lopt.cli.commands.cmd_train", abandoned)
    assert main(["train", "--steps", "2"]) == 143
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["lopt train: terminated (SIGTERM); nothing saved since the last checkpoint; "
                   "run the same command to resume"]


def test_train_keeps_a_bounded_history_and_the_log_keeps_every_step(tmp_path, monkeypatch):
    """A days-long job runs in flat memory: train() returns the last HISTORY_LIMIT records,
    the log file all of them (benchmarks/soak/ measures the RSS over 100k steps)."""
    import importlib

    monkeypatch.setattr(importlib.import_module("lopt.outer.train"), "HISTORY_LIMIT", 3)
    result = run(str(tmp_path), 5)
    assert [h["step"] for h in result.history] == [2, 3, 4] and result.steps_run == 5
    assert [r["step"] for r in _log(str(tmp_path))] == [0, 1, 2, 3, 4]


@pytest.fixture(scope="module")
def six_steps(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("reference"))
    return run(folder, 6), _log(folder)


@pytest.mark.parametrize("damage", ["flip a data byte", "a state folder from another seed",
                                    "an empty stray folder"])
def test_a_damaged_foreign_or_stray_checkpoint_falls_back_to_the_newest_intact_one(
        tmp_path, capsys, six_steps, damage):
    """Checkpoints prove themselves (a sha256 per field in their metadata): the resume says
    which one it passed over and why, resumes from the newest intact one, and still equals
    a run that was never interrupted (issue 26)."""
    import glob
    import shutil

    folder = str(tmp_path / "run")
    ckpt = os.path.join(folder, "checkpoints")
    run(folder, 4)  # keeps checkpoints 3 and 4
    bad, good = 4, 3
    if damage == "flip a data byte":
        data = max(glob.glob(f"{ckpt}/4/state/d/*"), key=os.path.getsize)
        raw = bytearray(open(data, "rb").read())
        raw[len(raw) // 2] ^= 0x10
        open(data, "wb").write(bytes(raw))
    elif damage == "a state folder from another seed":
        other = str(tmp_path / "other")
        train(RULE, FAMILY, EST, num_steps=4, seed=8, progress=False, checkpoint_every=4,
              checkpoint_path=f"{other}/checkpoints")
        shutil.rmtree(f"{ckpt}/4/state")
        shutil.copytree(f"{other}/checkpoints/4/state", f"{ckpt}/4/state")
    else:
        os.makedirs(f"{ckpt}/999")
        bad, good = 999, 4
    capsys.readouterr()
    resumed = run(folder, 6)
    err = capsys.readouterr().err
    assert f"checkpoint {bad} is not usable" in err and f"resuming from checkpoint {good}" in err
    assert not os.path.exists(f"{ckpt}/{bad}") or bad == good + 1  # set aside, then rewritten
    if damage == "a state folder from another seed":
        assert "does not match its checksum" in err
    reference, log = six_steps
    _assert_same_run(reference, resumed)
    assert _log(folder) == log



def test_a_resume_past_a_damaged_checkpoint_sets_it_aside_and_keeps_the_intact_ones(
        tmp_path, capsys):
    """Issue 37, item 4: a damaged newest checkpoint left in place would count as that step's
    save, and the next rotation would delete the intact one before it, leaving only the
    damaged one and the newest. It is moved out of the rotation and the run says where."""
    import glob

    folder = str(tmp_path / "run")
    ckpt = os.path.join(folder, "checkpoints")
    first = run(folder, 4)  # keeps checkpoints 3 and 4
    data = max(glob.glob(f"{ckpt}/4/state/d/*"), key=os.path.getsize)
    raw = bytearray(open(data, "rb").read())
    raw[len(raw) // 2] ^= 0x10
    open(data, "wb").write(bytes(raw))
    capsys.readouterr()
    run(folder, 5)
    err = capsys.readouterr().err
    assert f"moved to {ckpt}.unusable/4; resuming from checkpoint 3" in err, err
    assert sorted(os.listdir(f"{ckpt}.unusable")) == ["4"]
    store = Checkpoints(ckpt)
    assert store.all_steps() == [4, 5]
    for step in (4, 5):  # both rewritten by the resumed run, both intact
        store.restore(first.state, step)


def test_a_foreign_newest_checkpoint_is_passed_over_and_a_wholly_foreign_folder_refused(
        tmp_path, capsys, six_steps):
    """Issue 37, item 9: a newest step folder written by another run (another rule config) is
    passed over to this run's newest, as the docs say, instead of refusing with advice to
    start afresh, which would discard the intact older checkpoints. When no checkpoint is
    this run's, the resume is refused as before: the settings changed."""
    import shutil

    from lopt.files.run_folder import ForeignCheckpoint
    from lopt.rules import l2l_lstm

    folder, other = str(tmp_path / "run"), str(tmp_path / "other")
    ckpt = os.path.join(folder, "checkpoints")
    run(folder, 4)
    train(l2l_lstm(hidden=5, layers=1), FAMILY, EST, num_steps=5, seed=7, progress=False,
          checkpoint_every=5, checkpoint_path=f"{other}/checkpoints")
    shutil.copytree(f"{other}/checkpoints/5", f"{ckpt}/5")
    capsys.readouterr()
    resumed = run(folder, 6)
    err = capsys.readouterr().err
    assert "checkpoint 5 is not usable (written by another run: " in err, err
    assert f"moved to {ckpt}.unusable/5; resuming from checkpoint 4" in err
    reference, log = six_steps
    _assert_same_run(reference, resumed)
    assert _log(folder) == log
    with pytest.raises(ForeignCheckpoint, match="rule_config.hidden"):
        train(l2l_lstm(hidden=5, layers=1), FAMILY, EST, num_steps=8, seed=7, progress=False,
              checkpoint_path=ckpt)
    assert Checkpoints(ckpt).all_steps() == [5, 6]  # a refusal moves nothing


@pytest.fixture
def small_disk(tmp_path):
    """A real 400 KiB file system (tmpfs), where one can be mounted (root)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if made.returncode:
        pytest.skip(f"no tmpfs can be mounted here: {made.stderr.strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_is_exit_1_with_one_line_naming_the_path(small_disk):
    """Filled mid-run (a checkpoint's write) and full at launch (the lock file): exit 1, one
    line naming what could not be written, no usage-error code, no empty lock file left."""
    out = str(small_disk / "run")
    argv = [sys.executable, "-m", "lopt", "train", "--task", "quadratic", "--steps", "100000",
            "--num-runs", "4", "--truncation", "3", "--horizon", "8", "--rule-config",
            '{"hidden": 4, "layers": 1}', "--checkpoint-every", "10", "--no-progress",
            "--out", out]
    mid = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    err = mid.stderr.strip().splitlines()
    assert mid.returncode == 1 and len(err) == 1, mid.stderr[-2000:]
    assert "no space left on device" in err[0].lower() and small_disk.name in err[0], err
    fd = os.open(small_disk / "filler", os.O_WRONLY | os.O_CREAT)  # whatever is left
    try:
        while True:
            os.write(fd, b"\0" * 1024)
    except OSError:
        pass
    os.close(fd)
    # A fresh folder: resuming the first would remove its stale temporary checkpoint first,
    # freeing space (under load the run then got as far as its next checkpoint).
    fresh = str(small_disk / "fresh")
    launch = subprocess.run(argv[:-1] + [fresh], capture_output=True, text=True, timeout=300)
    err = launch.stderr.strip().splitlines()
    assert launch.returncode == 1 and len(err) == 1, launch.stderr[-2000:]
    assert "no space left on device" in err[0].lower() and fresh in err[0], err
    assert not os.path.exists(os.path.join(fresh, ".lopt-train.lock"))


@pytest.mark.parametrize("process_id,said", [
    (0, "the other 1 process(es) did not all join"),
    (1, "the coordinator (process 0) at 127.0.0.1:"),
])
def test_a_job_whose_peer_never_starts_ends_in_one_line_within_the_join_timeout(
        tmp_path, process_id, said):
    """jax aborts in C++ when its initialization times out; lopt's watchdog ends the process
    first, with one line naming who is missing and how to go on (issue 26)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        coordinator = f"127.0.0.1:{s.getsockname()[1]}"
    out = tmp_path / "run"
    start = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "lopt", "train", "--distributed", "--coordinator", coordinator,
         "--num-processes", "2", "--process-id", str(process_id), "--join-timeout", "3",
         "--out", str(out)], capture_output=True, text=True, timeout=120)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(err) == 1, proc.stderr[-2000:]
    assert f"process {process_id} waited 3 s" in err[0] and said in err[0]
    assert "run the same command again" in err[0]
    assert time.time() - start < 60 and not out.exists()


@pytest.mark.devices
@pytest.mark.parametrize("stopped,said", [
    (1, "process 1 of the distributed job has not answered"),
    (0, "the coordinator (process 0) of the distributed job has not answered"),
])
def test_a_stopped_peer_ends_the_job_in_one_line_within_the_silence_limit(tmp_path, stopped,
                                                                          said):
    """A SIGSTOPped process keeps its sockets open, so no collective fails; jax would abort
    the survivor in C++ after the 30 s heartbeat timeout. lopt.cli.liveness sees the stopped
    process's counter stand still and ends the survivor first, in one line (issue 26)."""
    from lopt.cli.liveness import SILENCE_LIMIT

    out = str(tmp_path / "run")
    procs = _endless_two_process_job(out)
    survivor = procs[1 - stopped]
    try:
        procs[stopped].send_signal(signal.SIGSTOP)
        start = time.time()
        _, err = survivor.communicate(timeout=60)
        waited = time.time() - start
    finally:
        for p in procs:
            p.kill()
            p.wait()
    lines = [line for line in err.strip().splitlines() if not line.startswith("[Gloo]")]
    assert survivor.returncode == 1, err[-2000:]
    assert len(lines) == 1 and said in lines[0], err[-2000:]
    assert "run the same command again" in lines[0] and out in lines[0]
    # the silence began at the stopped process's last count, up to a beat before the signal
    assert SILENCE_LIMIT - 1.5 <= waited < SILENCE_LIMIT + 5, waited
    assert "Traceback" not in err and "Check failure" not in err


class _Store:
    """The job's key-value store as jaxlib's client presents it, in one process."""

    def __init__(self):
        self.values, self.lock = {}, __import__("threading").Lock()

    def key_value_set(self, key, value, allow_overwrite=False):
        with self.lock:
            self.values[key] = value

    def key_value_try_get(self, key):
        with self.lock:
            if key not in self.values:
                raise RuntimeError(f"NOT_FOUND: {key}")
            return self.values[key]


def test_peer_watch_flags_a_silent_peer_and_never_one_that_finished():
    from lopt.cli.liveness import PeerWatch

    store, silent = _Store(), []
    watches = [PeerWatch(p, 3, lambda p, s: silent.append(p), limit=0.6, beat=0.05,
                         client=store).start() for p in range(3)]
    time.sleep(0.3)
    watches[2].finish()  # done training: its counter stops, and that is not a hang
    time.sleep(1.2)
    assert silent == []
    watches[1].stopped.set()  # stops counting without saying it is done: a stopped process
    time.sleep(1.2)
    assert silent == [1]
    for w in watches:
        w.finish()


def test_a_run_that_locks_the_file_its_holder_just_unlinked_retries_on_the_fresh_one(
        tmp_path, monkeypatch):
    """Issue 37, item 12: FolderLock unlinks its file while holding it. A run that opened the
    file just before the holder let go, then locked it, held a lock on an unlinked file while
    a third run locked the fresh one: two runs on one folder. The lock now counts only when
    the path still names the file locked."""
    import fcntl

    from lopt.files import run_folder
    from lopt.files.run_folder import FolderLock

    folder = str(tmp_path)
    first = FolderLock(folder).__enter__()
    real, released = fcntl.flock, []

    def flock(fd, op):
        if not released:  # the first run lets go between the second's open and its flock
            released.append(True)
            first.__exit__(None, None, None)
        return real(fd, op)

    monkeypatch.setattr(run_folder.fcntl, "flock", flock)
    second = FolderLock(folder).__enter__()
    monkeypatch.undo()
    with pytest.raises(ValueError, match=f"in use by another lopt command \\(pid {os.getpid()}"):
        FolderLock(folder).__enter__()
    second.__exit__(None, None, None)
    with FolderLock(folder):  # free again once the second lets go
        pass


@pytest.mark.parametrize("signum,code,what", [(signal.SIGINT, 130, "interrupted"),
                                              (signal.SIGTERM, 143, "terminated (SIGTERM)")])
def test_a_signal_while_the_command_starts_is_one_line_and_its_code(tmp_path, signum, code,
                                                                     what):
    """Issue 37, item 2: Ctrl-C in the first seconds (jax loading) was swallowed by jax's gc
    callback and the run trained to the end, or died with a traceback; SIGTERM there ended
    it without a word. The command answers both from its first instant."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "lopt", "train", "--task", "quadratic", "--steps", "300",
         "--num-runs", "4", "--truncation", "3", "--horizon", "8", "--no-progress",
         "--out", str(tmp_path / "run")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    time.sleep(0.6)  # python is up, jax is loading
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err
    assert err.strip() == f"lopt train: {what} while starting; nothing was done", err
    assert not os.path.exists(tmp_path / "run")


CHILD = """
import atexit, os, signal, sys, time
import lopt.cli.training as training
from lopt.outer.train import Abandoned

def comparison(*args, **kwargs):
    raise Abandoned(signal.SIGTERM)  # as a SIGTERM in the comparison raises it

def second_signal():  # while the interpreter tears down, after the one line
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(2)

training.run_comparison = comparison
atexit.register(second_signal)
sys.argv = ["lopt"] + sys.argv[1:]
from lopt.cli import main
sys.exit(main())
"""


def test_a_signal_during_the_comparison_names_the_saved_rule_and_a_second_keeps_the_code(
        tmp_path):
    """Issue 37, item 8: stopped in the comparison, the line said "nothing saved since the
    last checkpoint" though the rule file was saved; a second signal after the line killed
    the process by the signal (a parent saw -2). Now the line names the saved file, and the
    exit code stays the first signal's."""
    out = str(tmp_path / "run")
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, "train", "--task", "quadratic", "--steps", "2",
         "--num-runs", "4", "--truncation", "3", "--horizon", "8", "--rule-config",
         '{"hidden": 4, "layers": 1}', "--no-progress", "--out", out],
        capture_output=True, text=True, timeout=300)
    rule = os.path.join(out, "l2l_lstm.lopt")
    assert proc.returncode == 143, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"lopt train: terminated (SIGTERM); meta-training had finished and {rule} is saved; "
        f"the comparison was not written (lopt eval {rule} runs it)")
    assert os.path.exists(rule)


def test_a_signal_inside_a_gc_callback_is_delivered_again_outside_it():
    """jax registers a gc callback; an exception a signal handler raises inside one (or in a
    finalizer or weakref callback a collection runs) is printed as "Exception ignored" and
    lost (issue 37, item 2's swallowed Ctrl-C). lopt's unraisable hook sends the signal again,
    to be raised outside."""
    import gc

    from lopt.outer.signals import raise_in_main
    from lopt.outer.train import Abandoned

    armed, fired = [], []

    def callback(phase, info):
        # only in the collection below: an automatic one may run at any allocation before it
        if phase == "start" and armed and not fired:
            fired.append(True)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.01)  # the handler runs here, inside the callback

    previous = signal.signal(signal.SIGTERM,
                             lambda s, f: raise_in_main(s, f, Abandoned(s)))
    gc.callbacks.append(callback)
    try:
        with pytest.raises(Abandoned):
            armed.append(True)
            gc.collect()
            time.sleep(2)
    finally:
        gc.callbacks.remove(callback)
        signal.signal(signal.SIGTERM, previous)
    assert fired


@pytest.mark.devices
def test_a_coordinator_port_in_use_is_refused_in_one_line(tmp_path):
    """Process 0 hosts the job's coordination service; a port it cannot bind is exit 2 with
    one line naming --coordinator."""
    import socket

    with socket.socket(socket.AF_INET6) as busy:
        busy.bind(("::", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = tmp_path / "run"
        proc = subprocess.run(
            [sys.executable, "-m", "lopt", "train", "--task", "quadratic", "--steps", "2",
             "--out", str(out), "--distributed", "--coordinator", f"127.0.0.1:{port}",
             "--num-processes", "2", "--process-id", "0", "--join-timeout", "20",
             "--no-progress"], capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and "--coordinator 127.0.0.1:" in lines[0] and "port" in lines[0]
