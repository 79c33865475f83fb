"""Training checkpoints with orbax-checkpoint: one folder per saved step (written to a temporary
folder and renamed when complete), the last ``keep`` kept, and in a ``jax.distributed`` job one
checkpoint for the whole job — every process writes its own inner runs as its shard of the
global batch, so a resume may use another number of devices.

A checkpoint is a TrainState (its inner runs in global order) plus JSON metadata: the rule, its
config, the step and the run's settings (``lopt.files.run_folder.check_resume``)."""
from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import sys
from typing import Optional

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lopt.files.errors import FileFormatError
from lopt.files.pytree_file import load_pytree, read_metadata, save_pytree
from lopt.files.run_folder import ForeignCheckpoint

# Arrays whose leading axis is the batch of inner runs: the TrainState's est_state.
RUNS_FIELD = "est_state"


def _ocp():
    # orbax logs every save at INFO through absl; a meta-training log is not the place.
    logging.getLogger("absl").setLevel(logging.WARNING)
    return ocp


def open_checkpoints(path: str, keep: int = 2):
    """The checkpoints at ``path``: an orbax folder, or — when ``path`` (or this process's
    ``path.processI-of-N``) is an existing file — a run begun by lopt ≤ 0.1, which goes on in
    its own one-.npz-file-per-process format."""
    legacy = NpzCheckpoint(path)
    return legacy if os.path.isfile(legacy.file) else Checkpoints(path, keep)


class NpzCheckpoint:
    """lopt ≤ 0.1's checkpoint: one atomic .npz per process holding its runs."""

    def __init__(self, path: str):
        k = jax.process_count()
        self.file = path if k == 1 else f"{path}.process{jax.process_index()}-of-{k}"
        self.folder = os.path.dirname(os.path.abspath(self.file))

    def latest_step(self) -> Optional[int]:
        return int(self.metadata().get("step", 0)) if os.path.exists(self.file) else None

    def metadata(self, step=None) -> dict:
        return read_metadata(self.file)

    def save(self, state, metadata: dict) -> None:
        save_pytree(self.file, state, metadata)

    def restore(self, template, step=None):
        return load_pytree(self.file, template)


class Checkpoints:
    """The checkpoints of one run in ``folder`` (created on the first save)."""

    def __init__(self, folder: str, keep: int = 2):
        if keep < 1:
            raise ValueError(f"keep must be a positive integer, got {keep}")
        self.folder = os.path.abspath(folder)
        self.keep = keep
        self._manager = None
        self._multi = jax.process_count() > 1
        self._writing = False

    def _mgr(self):
        if self._manager is None:
            ocp = _ocp()
            # Orbax's own clean-up of temporary folders runs in a background thread whenever a
            # manager opens: a mere reader (a refused second `lopt train`, `lopt eval`) would
            # delete the folder a running job is writing. Only the writer cleans, in save().
            options = ocp.CheckpointManagerOptions(
                max_to_keep=self.keep, enable_async_checkpointing=False,
                cleanup_tmp_directories=False, create=False)
            self._manager = ocp.CheckpointManager(self.folder, options=options)
        return self._manager

    def _start_writing(self) -> None:
        """Create the folder and remove the temporaries an interrupted save left (the primary
        process only; the caller holds the run folder, so no save is in flight)."""
        os.makedirs(self.folder, exist_ok=True)
        if jax.process_index() == 0:
            for name in stale_temporaries(self.folder):
                shutil.rmtree(os.path.join(self.folder, name), ignore_errors=True)
        self._writing = True

    def all_steps(self) -> list:
        return sorted(self._mgr().all_steps()) if os.path.isdir(self.folder) else []

    def latest_step(self) -> Optional[int]:
        if not os.path.isdir(self.folder):
            return None
        try:
            return self._mgr().latest_step()
        except Exception as err:
            raise FileFormatError(f"{self.folder}: not a readable checkpoint folder "
                                  f"({_first_line(err)})") from None

    def metadata(self, step: Optional[int] = None) -> dict:
        """The JSON metadata of ``step`` (the latest when None)."""
        ocp = _ocp()
        step = self.latest_step() if step is None else step
        try:
            meta = self._mgr().restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        except Exception as err:
            raise FileFormatError(f"{self.folder}/{step}: not a readable checkpoint "
                                  f"({_first_line(err)})") from None
        meta = meta["meta"]
        if not isinstance(meta, dict):
            raise FileFormatError(f"{self.folder}/{step}: metadata must be a JSON object")
        return meta

    def save(self, state, metadata: dict) -> None:
        """Write ``state`` (host layout; in a multi-process job this process's runs) at
        ``metadata["step"]``, with a sha256 of each field in the metadata."""
        ocp = _ocp()
        if not self._writing:
            self._start_writing()
        if int(metadata["step"]) in self._mgr().all_steps():
            return  # this step is saved already (the same state: a run is deterministic)
        host = jax.device_get(state)
        tree = self._global(host) if self._multi else host
        metadata = dict(metadata, sha256=self._digests(host))
        step = int(metadata["step"])
        absl = logging.getLogger("absl")
        level = absl.level
        # A failed write is reported once, below, in lopt's words: orbax's writer thread would
        # also log it with a 40-line traceback (seen when the disk fills during its metadata
        # write). The save is waited for, so the thread is done when the level is restored.
        absl.setLevel(logging.CRITICAL)
        try:
            self._mgr().save(step, args=ocp.args.Composite(
                state=ocp.args.StandardSave(tree), meta=ocp.args.JsonSave(metadata)), force=True)
            self._mgr().wait_until_finished()
        except Exception as err:
            _quiet_closed_loop_callbacks()
            # tensorstore reports a full disk as RESOURCE_EXHAUSTED in a ValueError: a write
            # that failed is an OSError here (exit 1), never a usage error; the unfinished
            # folder is removed by the next run's first save.
            full = "No space left on device" in str(err) or \
                getattr(err, "errno", None) == errno.ENOSPC
            what = "no space left on device" if full else _first_line(err)
            raise OSError(errno.ENOSPC if full else errno.EIO,
                          f"writing checkpoint {step} in {self.folder} failed: {what}") from None
        finally:
            absl.setLevel(level)

    def restore(self, template, step: Optional[int] = None):
        """The TrainState of ``step`` (the latest when None) in the structure of ``template``
        (host layout; in a multi-process job this process's runs)."""
        ocp = _ocp()
        step = self.latest_step() if step is None else step
        if self._multi:
            abstract = self._global(template, abstract=True)
        else:
            # A sharding for every leaf: a checkpoint written by several processes restores
            # onto this one device (orbax refuses a target without one across topologies).
            one = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
            abstract = jax.tree.map(
                lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=one), template)
        try:
            out = self._mgr().restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract)))["state"]
        except Exception as err:
            raise FileFormatError(f"{self.folder}/{step}: does not hold this run's state "
                                  f"({_first_line(err)})") from None
        out = self._local(out) if self._multi else out
        out = jax.tree.map(lambda x: jax.numpy.asarray(np.asarray(x)), out)
        self._check(out, step)
        return out

    def latest_intact(self, template, check=None) -> tuple:
        """(step, metadata, state, skipped) of the newest checkpoint that reads back whole
        and matches its checksums; ``skipped`` lists (step, reason) for each newer one that
        does not (a damaged file, a foreign state folder, a stray empty folder). ``check``
        (metadata -> None, raising) runs on each one's metadata before its state is read.
        Raises FileFormatError, naming each, when none is intact."""
        skipped = []
        for step, meta in self._matching(skipped, check):
            try:
                return step, meta, self.restore(template, step), skipped
            except FileFormatError as err:
                skipped.append((step, str(err)))
        raise self._none_intact(skipped)

    def set_aside(self, step: int) -> str:
        """Move checkpoint ``step`` (one a resume passed over) out of the rotation, to
        ``FOLDER.unusable/STEP``, and return where: left in place, the save of that step would
        count it as done and a later rotation would delete the intact checkpoint before it.
        In a multi-process job the primary process moves it and every process then waits."""
        if jax.process_index() == 0:
            aside = os.path.join(f"{self.folder}.unusable", str(step))
            n = 1
            while os.path.exists(aside):
                n += 1
                aside = os.path.join(f"{self.folder}.unusable", f"{step}-{n}")
            os.makedirs(os.path.dirname(aside), exist_ok=True)
            os.rename(os.path.join(self.folder, str(step)), aside)
        else:
            aside = os.path.join(f"{self.folder}.unusable", str(step))
        if self._multi:
            from jax.experimental import multihost_utils
            multihost_utils.sync_global_devices(f"lopt set aside checkpoint {step}")
        if self._manager is not None:  # its list of steps is stale
            self._manager.close()
            self._manager = None
        return aside

    def newest_metadata(self, check=None) -> dict:
        """The metadata of the newest checkpoint whose metadata reads and passes ``check``
        (what a resume will use; a stray, damaged or foreign newer folder is passed over, as
        ``latest_intact`` does)."""
        skipped = []
        for _, meta in self._matching(skipped, check):
            return meta
        raise self._none_intact(skipped)

    def _matching(self, skipped: list, check):
        """(step, metadata) newest first of each readable step that ``check`` accepts. One
        written by another run (``ForeignCheckpoint``) is passed over and appended to
        ``skipped`` while an older one may be this run's; when every readable one is foreign
        the newest one's refusal is raised (the run's settings changed: say so)."""
        foreign = None
        for step, meta in self._readable(skipped):
            if check is not None:
                try:
                    check(meta)
                except ForeignCheckpoint as err:
                    foreign = foreign or err
                    skipped.append((step, f"written by another run: {err}"))
                    continue
            yield step, meta
        if foreign is not None:
            raise foreign

    def _readable(self, skipped: list):
        """(step, metadata) newest first of each step whose metadata reads; (step, reason)
        of each one whose does not is appended to ``skipped``."""
        for step in sorted(self.all_steps(), reverse=True):
            try:
                meta = self.metadata(step)
            except FileFormatError as err:
                skipped.append((step, str(err)))
                continue
            yield step, meta

    def _none_intact(self, skipped: list) -> FileFormatError:
        return FileFormatError("; ".join(reason for _, reason in skipped) or
                               f"{self.folder}: no checkpoint")

    # A sha256 per field of the host-layout state: orbax and tensorstore check structure and
    # offsets, not contents, so a flipped byte or a state folder from another run would load.
    # In a multi-process job each process holds only its runs, so the inner runs' field is
    # not covered there; theta, the meta-optimizer state, key and step always are.
    def _digests(self, state) -> dict:
        return {name: _sha256(getattr(state, name)) for name in state._fields
                if not (self._multi and name == RUNS_FIELD)}

    def _check(self, state, step) -> None:
        stored = self.metadata(step).get("sha256")
        if stored is None:
            return  # written before checksums (lopt <= 0.2)
        if not isinstance(stored, dict):
            raise FileFormatError(f"{self.folder}/{step}: its checksums must be a JSON object")
        mine = self._digests(state)
        for name, digest in stored.items():
            if name in mine and mine[name] != digest:
                raise FileFormatError(f"{self.folder}/{step}: its {name} does not match its "
                                      "checksum (a damaged file, or a state folder from "
                                      "another run)")

    # In a multi-process job the runs axis is split over processes and the rest replicated.
    def _shardings(self, state):
        # One device per process: each process's shard of the runs is all of its runs.
        firsts = [min((d for d in jax.devices() if d.process_index == p), key=lambda d: d.id)
                  for p in range(jax.process_count())]
        mesh = Mesh(np.array(firsts), ("p",))
        runs, whole = NamedSharding(mesh, PartitionSpec("p")), NamedSharding(mesh, PartitionSpec())
        return {name: (runs if name == RUNS_FIELD else whole) for name in state._fields}

    def _global(self, state, abstract: bool = False):
        shardings = self._shardings(state)
        k = jax.process_count()
        fields = {}
        for name in state._fields:
            sharding = shardings[name]
            split = name == RUNS_FIELD

            def one(x, sharding=sharding, split=split):
                x = np.asarray(jax.device_get(x)) if not abstract else x
                shape = (x.shape[0] * k,) + tuple(x.shape[1:]) if split else tuple(np.shape(x))
                if abstract:
                    return jax.ShapeDtypeStruct(shape, x.dtype, sharding=sharding)
                return jax.make_array_from_process_local_data(sharding, x, shape)

            fields[name] = jax.tree.map(one, getattr(state, name))
        return type(state)(**fields)

    @staticmethod
    def _local(state):
        """This process's part of every global array: its one shard (see ``_shardings``)."""
        return jax.tree.map(lambda x: np.asarray(x.addressable_shards[0].data), state)


def _sha256(tree) -> str:
    """sha256 over every leaf's path, dtype, shape and bytes."""
    h = hashlib.sha256()
    for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]:
        x = np.ascontiguousarray(np.asarray(x))
        h.update(f"{jax.tree_util.keystr(path)}|{x.dtype.str}|{x.shape}|".encode())
        h.update(x.tobytes())
    return h.hexdigest()


def stale_temporaries(folder: str) -> list:
    """The names of the unfinished checkpoint folders orbax left in ``folder``."""
    if not os.path.isdir(folder):
        return []
    return sorted(n for n in os.listdir(folder) if ".orbax-checkpoint-tmp" in n)


def _quiet_closed_loop_callbacks() -> None:
    """After a failed save, tensorstore's writes still in flight finish on threads of their
    own and resolve their asyncio futures through a loop orbax has already closed: each raises
    "Event loop is closed" as an unraisable exception, which Python prints as a traceback
    beside lopt's one-line report (seen under load in the full-disk test). Those, and only
    those, are dropped from then on; every other unraisable exception is printed as before."""
    default = sys.unraisablehook

    def hook(unraisable):
        value = unraisable.exc_value
        if isinstance(value, RuntimeError) and str(value) == "Event loop is closed":
            return
        default(unraisable)

    hook.lopt_quiet = True
    if not getattr(sys.unraisablehook, "lopt_quiet", False):
        sys.unraisablehook = hook


def _first_line(err) -> str:
    """The gist of an orbax/tensorstore error: its first line without the store's spec."""
    text = str(err).strip()
    if not text:
        return type(err).__name__
    return text.splitlines()[0].split(" [tensorstore_spec")[0][:240]
