"""Meta-trains a small rule with PES and with the mixed estimator, then saves the thetas.

Run by tests/outer/test_devices.py as a separate process: with one device, with two forced
CPU devices, or as one of two `jax.distributed` processes (gloo collectives on CPU).
usage: distributed_worker.py OUT.npz DEVICES [COORDINATOR NUM_PROCESSES PROCESS_ID [CKPT]]
"""
import sys

import jax

if len(sys.argv) > 3:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=sys.argv[3], num_processes=int(sys.argv[4]),
                               process_id=int(sys.argv[5]))

import numpy as np  # noqa: E402
import optax  # noqa: E402

from lopt.outer import PES, Mixed, train  # noqa: E402
from lopt.rules import l2l_lstm  # noqa: E402
from lopt.tasks import quadratic_family  # noqa: E402

out_path, devices = sys.argv[1], sys.argv[2]
devices = None if devices == "none" else int(devices)
rule, family = l2l_lstm(hidden=4, layers=1), quadratic_family(dim=4)
checkpoints = sys.argv[6] if len(sys.argv) > 6 else None
thetas = {}
for name, est in (("pes", PES(num_runs=4, truncation=3, horizon=7, sigma=0.05)),
                  ("mixed", Mixed(num_runs=4, truncation=3, horizon=7, sigma=0.05))):
    history = []
    # With CKPT the PES run stops at step 2 (one orbax checkpoint written by every process)
    # and resumes from it: its theta must still match the other layouts' uninterrupted runs.
    for steps in ((2, 4) if checkpoints and name == "pes" else (4,)):
        result = train(rule, family, est, num_steps=steps, seed=3, devices=devices,
                       progress=False, meta_optimizer=optax.sgd(0.05),
                       checkpoint_path=checkpoints if name == "pes" else None)
        history += result.history
    thetas.update({f"{name}/{i}": np.asarray(x)
                   for i, x in enumerate(jax.tree.leaves(result.theta))})
    thetas[f"{name}/meta_loss"] = np.array([h["meta_loss"] for h in history])
if jax.process_index() == 0:
    np.savez(out_path, **thetas)
if len(sys.argv) > 3:
    jax.distributed.shutdown()
