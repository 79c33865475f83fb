"""The same seed gives the same theta on 1 device, 2 forced CPU devices and 2 processes."""
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest

WORKER = str(pathlib.Path(__file__).with_name("distributed_worker.py"))


def _env(device_count=None):
    # The suite's XLA flags (conftest: faster compiles) stay; the device count is added.
    env = dict(os.environ)
    flags = env.get("XLA_FLAGS", "")
    if device_count:
        flags += f" --xla_force_host_platform_device_count={device_count}"
    env["XLA_FLAGS"] = flags
    return env


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def thetas(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("devices")
    runs = {
        "one": [[WORKER, str(tmp / "one.npz"), "none"]],
        "two_devices": [[WORKER, str(tmp / "two_devices.npz"), "2"]],
    }
    coordinator = f"127.0.0.1:{_free_port()}"
    runs["two_processes"] = [[WORKER, str(tmp / "two_processes.npz"), "1", coordinator, "2", str(i),
                              str(tmp / "two_process_checkpoints")] for i in range(2)]
    procs = []
    for name, commands in runs.items():
        for argv in commands:
            env = _env(2 if name == "two_devices" else None)
            procs.append((name, subprocess.Popen([sys.executable] + argv, env=env,
                                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                 text=True)))
    for name, proc in procs:
        output, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{name} failed:\n{output[-3000:]}"
    out = {name: dict(np.load(tmp / f"{name}.npz")) for name in runs}
    out["checkpoints"] = str(tmp / "two_process_checkpoints")
    return out


# One test for the whole module: its fixture is 4 processes, and pytest-xdist would build a
# module fixture once per worker that runs one of its tests.
@pytest.mark.devices
def test_same_theta_on_two_devices_on_two_processes_and_after_resumes(thetas, tmp_path):
    assert {"one", "two_devices", "two_processes"} <= set(thetas)
    for other in ("two_devices", "two_processes"):
        _same_theta_as_one_device(thetas, other)
    _two_process_checkpoint_resumes_on_one(thetas, tmp_path)


def _same_theta_as_one_device(thetas, other):
    one, two = thetas["one"], thetas[other]
    assert set(one) == set(two)
    for estimator in ("pes", "mixed"):
        keys = [k for k in one if k.startswith(estimator + "/") and not k.endswith("meta_loss")]
        a = np.concatenate([one[k].ravel() for k in keys])
        b = np.concatenate([two[k].ravel() for k in keys])
        assert np.linalg.norm(a - b) <= 1e-5 * np.linalg.norm(a), estimator
        np.testing.assert_allclose(one[f"{estimator}/meta_loss"], two[f"{estimator}/meta_loss"],
                                   rtol=1e-5)
    # theta moved: the comparison is between trained values, not the shared initialization.
    assert not np.allclose(one["pes/meta_loss"][0], one["pes/meta_loss"][-1])


def _two_process_checkpoint_resumes_on_one(thetas, tmp_path):
    """Both processes wrote their runs into one orbax checkpoint at step 2. The two processes
    resumed it to step 4 (their theta matches the other layouts' uninterrupted runs, above);
    here one process on one device resumes it from step 2 and also reaches the theta of the
    uninterrupted single-device run."""
    import shutil

    import jax
    import optax

    from lopt.files.checkpoints import Checkpoints
    from lopt.outer import PES, train
    from lopt.rules import l2l_lstm
    from lopt.tasks import quadratic_family

    folder = str(tmp_path / "checkpoints")
    shutil.copytree(thetas["checkpoints"], folder)
    assert Checkpoints(folder).all_steps() == [2, 4]
    shutil.rmtree(os.path.join(folder, "4"))
    result = train(l2l_lstm(hidden=4, layers=1), quadratic_family(dim=4),
                   PES(num_runs=4, truncation=3, horizon=7, sigma=0.05), num_steps=4, seed=3,
                   progress=False, meta_optimizer=optax.sgd(0.05), checkpoint_path=folder)
    assert len(result.history) == 2
    one = thetas["one"]
    a = np.concatenate([one[f"pes/{i}"].ravel() for i in range(len(jax.tree.leaves(result.theta)))])
    b = np.concatenate([np.asarray(x).ravel() for x in jax.tree.leaves(result.theta)])
    assert np.linalg.norm(a - b) <= 1e-5 * np.linalg.norm(a)
    np.testing.assert_allclose([h["meta_loss"] for h in result.history], one["pes/meta_loss"][2:],
                               rtol=1e-5)
