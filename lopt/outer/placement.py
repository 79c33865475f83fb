"""Where the inner runs of meta-training live: a device ``Mesh`` whose one axis splits the batch
of inner runs, over one device, the local devices, or every device of a ``jax.distributed`` job.

The outer step is one ``jax.jit`` of a ``jax.shard_map`` over that mesh, the same program for
every layout: each device unrolls its block of runs and the estimator reduces the
meta-gradient across the mesh axis (``psum``) inside the step, so theta, the meta-optimizer's
state, the key and the step stay replicated."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lopt.files.checkpoints import RUNS_FIELD
from lopt.outer.mixture import runs_per_family
from lopt.tasks.mixture import Mixture


def runs_per_split(estimator, family) -> int:
    """The run count that must split evenly over devices: each family's share in a mixture."""
    num = getattr(estimator, "num_tasks", 1)
    return runs_per_family(num, family) if isinstance(family, Mixture) else num


def resolve_devices(devices):
    """The local devices to run on: None (the first local device), an int (the first n local
    devices) or a sequence of devices."""
    local = jax.local_devices()
    if devices is None:
        return local[:1]
    if isinstance(devices, int) and not isinstance(devices, bool):
        if not 1 <= devices <= len(local):
            raise ValueError(f"devices must be between 1 and the {len(local)} local devices, "
                             f"got {devices}")
        return local[:devices]
    devices = list(devices)
    if not devices:
        raise ValueError("devices must name at least one device")
    return devices


def runs_mesh(devices) -> Mesh:
    """The 1-d mesh (axis ``runs``) over ``devices`` and, in a multi-process job, over the same
    devices of every other process (which must then be all of them)."""
    if jax.process_count() > 1:
        if len(devices) != jax.local_device_count():
            raise ValueError(f"in a multi-process job devices must be all "
                             f"{jax.local_device_count()} local devices, got {len(devices)}")
        # Process-major order: process p's runs are the p-th contiguous block of the batch.
        devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
    return Mesh(np.array(devices), (Placement.AXIS,))


class Placement:
    """How the batch of inner runs is laid out on the mesh, and the one compiled outer step."""

    AXIS = "runs"

    def __init__(self, devices, num_runs):
        self.mesh = runs_mesh(devices)
        self.processes = jax.process_count()
        total = self.mesh.size
        if num_runs % total:
            raise ValueError(f"num_tasks ({num_runs}) must be a multiple of the number of devices "
                             f"({total}) to split the inner runs evenly")
        self.per_device = num_runs // total
        # Whether the runs are split at all (a one-device mesh needs no reductions).
        self.sharded = total > 1
        self._runs = NamedSharding(self.mesh, PartitionSpec(self.AXIS))
        self._whole = NamedSharding(self.mesh, PartitionSpec())

    def _specs(self, state, runs, whole):
        return type(state)(*[jax.tree.map(lambda _: runs if name == RUNS_FIELD else whole, part)
                             for name, part in zip(state._fields, state)])

    def local_runs(self, est_state):
        """This process's slice of the global batch of runs (the whole batch on one process)."""
        if self.processes == 1:
            return est_state
        p, k = jax.process_index(), self.processes

        def mine(x):
            n = x.shape[0] // k
            return x[p * n:(p + 1) * n]

        return jax.tree.map(mine, est_state)

    def to_devices(self, state):
        """Host-layout state (this process's runs) → global arrays on the mesh."""
        shardings = self._specs(state, self._runs, self._whole)
        return jax.tree.map(lambda s, x: jax.make_array_from_process_local_data(s, np.asarray(x)),
                            shardings, state)

    def to_host(self, state):
        """The TrainState with this process's runs in global layout (what a checkpoint holds)."""
        return type(state)(*[jax.tree.map(_mine if name == RUNS_FIELD else _replica, part)
                             for name, part in zip(state._fields, state)])

    def first(self, tree):
        """A replicated output (the step's metrics) as one value."""
        return jax.tree.map(_replica, tree)

    def compile(self, outer_step, state_template, donate: bool = True):
        """``outer_step`` as one jitted ``shard_map`` over the mesh, its input donated (unless
        ``donate=False``: a profile calls it on one state again and again)."""
        specs = self._specs(state_template, PartitionSpec(self.AXIS), PartitionSpec())
        # Across devices jax checks that what leaves replicated was reduced; on one device a
        # hand-built estimator without reductions is replicated trivially.
        mapped = jax.shard_map(outer_step, mesh=self.mesh, in_specs=(specs,),
                               out_specs=(specs, PartitionSpec()), check_vma=self.sharded)
        return jax.jit(mapped, donate_argnums=0 if donate else ())


def _replica(x):
    return jnp.asarray(x.addressable_data(0)) if isinstance(x, jax.Array) else x


def _mine(x):
    """This process's contiguous block of a runs-sharded array, in order."""
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
        return jnp.asarray(x)
    shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
    return jnp.concatenate([jnp.asarray(s.data) for s in shards])
