"""Where the inner runs of meta-training live: whole on one device, or split over the local
devices of every process of a ``jax.distributed`` job (``pmap``)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from lopt.outer.mixture import runs_per_family
from lopt.tasks.mixture import Mixture


def runs_per_split(estimator, family) -> int:
    """The run count that must split evenly over devices: each family's share in a mixture."""
    num = getattr(estimator, "num_tasks", 1)
    return runs_per_family(num, family) if isinstance(family, Mixture) else num


def resolve_devices(devices):
    """The local devices to run on: None (one device, no pmap), an int (the first n local
    devices) or a sequence of devices."""
    if devices is None:
        return None
    local = jax.local_devices()
    if isinstance(devices, int) and not isinstance(devices, bool):
        if not 1 <= devices <= len(local):
            raise ValueError(f"devices must be between 1 and the {len(local)} local devices, "
                             f"got {devices}")
        return local[:devices]
    devices = list(devices)
    if not devices:
        raise ValueError("devices must name at least one device")
    return devices


class Placement:
    """How the batch of inner runs is laid out: whole on one device, or split over the local
    devices of every process (``pmap``; meta-gradients are reduced inside the estimator)."""

    AXIS = "runs"

    def __init__(self, devices, num_runs):
        self.devices = devices
        self.sharded = devices is not None and (len(devices) > 1 or jax.process_count() > 1)
        self.local = len(devices) if devices is not None else 1
        self.processes = jax.process_count() if self.sharded else 1
        total = self.local * self.processes
        if self.sharded and num_runs % total:
            raise ValueError(f"num_tasks ({num_runs}) must be a multiple of the number of devices "
                             f"({total}) to split the inner runs evenly")
        self.per_device = num_runs // total
        if self.processes > 1 and self.local != jax.local_device_count():
            raise ValueError(f"in a multi-process job devices must be all "
                             f"{jax.local_device_count()} local devices, got {self.local}")

    def local_runs(self, est_state):
        """This process's slice of the global batch of runs (the whole batch on one process)."""
        if not self.sharded:
            return est_state
        p, k = jax.process_index(), self.processes

        def mine(x):
            n = x.shape[0] // k
            return x[p * n:(p + 1) * n]

        return jax.tree.map(mine, est_state)

    def to_devices(self, state):
        if not self.sharded:
            return state
        split = jax.tree.map(lambda x: x.reshape((self.local, -1) + x.shape[1:]),
                             state.est_state)
        replicated = [jax.tree.map(lambda x: jnp.broadcast_to(x, (self.local,) + jnp.shape(x)), t)
                      for t in (state.theta, state.opt_state, state.key, state.step)]
        # pmap places the leading axis over its devices itself.
        return type(state)(replicated[0], replicated[1], split, replicated[2], replicated[3])

    def to_host(self, state):
        """The TrainState with this process's runs in global layout (what a checkpoint holds)."""
        if not self.sharded:
            return state
        first = [jax.tree.map(lambda x: x[0], t)
                 for t in (state.theta, state.opt_state, state.key, state.step)]
        runs = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), state.est_state)
        return type(state)(first[0], first[1], runs, first[2], first[3])

    def first(self, tree):
        return jax.tree.map(lambda x: x[0], tree) if self.sharded else tree

    def compile(self, outer_step):
        if not self.sharded:
            return jax.jit(outer_step, donate_argnums=0)
        # Across processes pmap must span every global device, each process feeding its own.
        devices = None if self.processes > 1 else self.devices
        return jax.pmap(outer_step, axis_name=self.AXIS, devices=devices, donate_argnums=0)
