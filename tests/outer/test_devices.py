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
    env = dict(os.environ)
    env.pop("XLA_FLAGS", None)
    if device_count:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={device_count}"
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
    runs["two_processes"] = [[WORKER, str(tmp / "two_processes.npz"), "1", coordinator, "2", str(i)]
                             for i in range(2)]
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
    return {name: dict(np.load(tmp / f"{name}.npz")) for name in runs}


@pytest.mark.parametrize("other", ["two_devices", "two_processes"])
def test_same_theta_as_one_device(thetas, other):
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
