"""Where the inner runs of meta-training live: a device ``Mesh`` whose ``runs`` axis splits the
batch of inner runs, over one device, the local devices, or every device of a
``jax.distributed`` job; optionally a second ``model`` axis over which each block's
tensor-parallel tasks split their models.

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
from lopt.files.errors import UsageError
from lopt.outer.mixture import runs_per_family
from lopt.tasks.mixture import Mixture
from lopt.tasks.tensor_parallel import MODEL_AXIS


def runs_per_split(estimator, family) -> int:
    """The run count that must split evenly over devices: each family's share in a mixture."""
    num = getattr(estimator, "num_runs", 1)
    return runs_per_family(num, family) if isinstance(family, Mixture) else num


def resolve_devices(devices):
    """The local devices to run on: None (the first local device), an int (the first n local
    devices) or a sequence of devices."""
    local = jax.local_devices()
    if devices is None:
        return local[:1]
    if isinstance(devices, int) and not isinstance(devices, bool):
        if not 1 <= devices <= len(local):
            raise UsageError(f"devices must be between 1 and the {len(local)} local devices, "
                             f"got {devices}")
        return local[:devices]
    devices = list(devices)
    if not devices:
        raise UsageError("devices must name at least one device")
    return devices


def runs_mesh(devices, model: int = 1) -> Mesh:
    """The mesh over ``devices`` and, in a multi-process job, over the same devices of every
    other process (which must then be all of them): 1-d (axis ``runs``), or with ``model`` > 1
    2-d ``runs × model``, each group of ``model`` consecutive devices (within one process)
    holding one block of runs whose tensor-parallel tasks split over them."""
    if isinstance(model, bool) or not isinstance(model, int) or model < 1:
        raise UsageError(f"model_parallel must be a positive integer, got {model!r}")
    if len(devices) % model:
        raise UsageError(f"model_parallel ({model}) must divide the number of devices "
                         f"({len(devices)})")
    if jax.process_count() > 1:
        if len(devices) != jax.local_device_count():
            raise UsageError(f"in a multi-process job devices must be all "
                             f"{jax.local_device_count()} local devices, got {len(devices)}")
        # Process-major order: process p's runs are the p-th contiguous block of the batch.
        devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
    if model == 1:
        return Mesh(np.array(devices), (Placement.AXIS,))
    return Mesh(np.array(devices).reshape(-1, model), (Placement.AXIS, MODEL_AXIS))


class Placement:
    """How the batch of inner runs is laid out on the mesh, and the one compiled outer step."""

    AXIS = "runs"

    def __init__(self, devices, num_runs, model: int = 1):
        self.mesh = runs_mesh(devices, model)
        self.model = model
        self.processes = jax.process_count()
        total = self.mesh.shape[self.AXIS]
        if num_runs % total:
            groups = "devices" if model == 1 else f"device groups (devices / {model})"
            raise UsageError(f"num_runs ({num_runs}) must be a multiple of the number of "
                             f"{groups} ({total}) to split the inner runs evenly")
        self.per_device = num_runs // total
        # Whether the runs are split at all (a one-device mesh needs no reductions).
        self.sharded = total > 1
        self._runs = NamedSharding(self.mesh, PartitionSpec(self.AXIS))
        self._whole = NamedSharding(self.mesh, PartitionSpec())
        self._layout = None  # the state's shardings the compiled step keeps (model axis)

    def _specs(self, state, runs, whole):
        return type(state)(*[jax.tree.map(lambda _: runs if name == RUNS_FIELD else whole, part)  # noqa: B023
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
        """Host-layout state (this process's runs) → global arrays on the mesh (where the
        compiled step keeps them, once ``compile`` has run)."""
        shardings = self._layout or self._specs(state, self._runs, self._whole)
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
        # The model axis stays with XLA's partitioner: a tensor-parallel task's sharding
        # constraints (lopt.tasks.tensor_parallel) split its arrays over it inside each block.
        mapped = jax.shard_map(outer_step, mesh=self.mesh, in_specs=(specs,),
                               out_specs=(specs, PartitionSpec()), axis_names={self.AXIS},
                               check_vma=self.sharded)
        donated = 0 if donate else ()
        if self.model == 1:
            return jax.jit(mapped, donate_argnums=donated)
        # Where the partitioner puts a tensor-parallel task's state is known only once it has
        # compiled the step: compile on the runs-only layout to learn it, then fix that layout
        # as the step's input and output, so the state stays split between steps and the step
        # is compiled for it once (two compiles in all, not one per layout met).
        whole = self._specs(state_template, self._runs, self._whole)
        abstract = jax.tree.map(lambda sh, x: jax.ShapeDtypeStruct(
            self._global_shape(sh, x), x.dtype, sharding=sh), whole, state_template)
        found = jax.jit(mapped).lower(abstract).compile().output_shardings[0]
        self._layout = found
        return jax.jit(mapped, in_shardings=(found,), out_shardings=(found, self._whole),
                       donate_argnums=donated)

    def _global_shape(self, sharding, x) -> tuple:
        shape = tuple(np.shape(x))
        if sharding is self._runs and self.processes > 1:
            shape = (shape[0] * self.processes,) + shape[1:]
        return shape


def _replica(x):
    return jnp.asarray(x.addressable_data(0)) if isinstance(x, jax.Array) else x


def _mine(x):
    """This process's contiguous block of a runs-sharded array, in order (its runs are whole
    on it: a process holds whole groups of the model axis)."""
    if not isinstance(x, jax.Array) or x.is_fully_addressable:
        return jnp.asarray(x)
    shards = x.addressable_shards
    lo = min(s.index[0].start or 0 for s in shards)
    hi = max(s.index[0].stop or x.shape[0] for s in shards)
    block = np.empty((hi - lo,) + x.shape[1:], x.dtype)
    for s in shards:
        rows = slice((s.index[0].start or 0) - lo, (s.index[0].stop or x.shape[0]) - lo)
        block[(rows,) + tuple(s.index[1:])] = np.asarray(s.data)
    return jnp.asarray(block)
