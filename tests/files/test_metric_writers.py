"""Meta-training's TensorBoard events, read back with a reader written here from the TFRecord
framing and the Event protobuf (not with the writer's code)."""
import glob
import os
import struct

import jax
import numpy as np
import pytest
from tensorboardX.proto import event_pb2

from lopt.outer import PES, train
from lopt.rules import l2l_lstm
from lopt.tasks import quadratic_family

RULE, FAMILY = l2l_lstm(hidden=4, layers=1), quadratic_family(dim=3)
EST = PES(num_runs=2, truncation=3, horizon=7, sigma=0.05)


def read_events(logdir):
    """{tag: {step: value}} over every event file in ``logdir``, honouring a file's purge
    marker (SessionLog START at step s drops what earlier files wrote at steps ≥ s)."""
    scalars = {}
    for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*")),
                       key=os.path.getmtime):
        data = open(path, "rb").read()
        at = 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at:at + 8])
            event = event_pb2.Event.FromString(data[at + 12:at + 12 + length])
            at += 12 + length + 4  # length, its crc, the record, its crc
            if event.HasField("session_log") and \
                    event.session_log.status == event_pb2.SessionLog.START:
                for steps in scalars.values():
                    for s in [s for s in steps if s >= event.step]:
                        del steps[s]
            for value in event.summary.value:
                scalars.setdefault(value.tag, {})[event.step] = value.simple_value
    return scalars


def _validate(theta):
    return {"mean": float(sum(np.sum(np.asarray(x)) for x in jax.tree.leaves(theta)))}


def test_train_writes_tensorboard_scalars_with_meta_validation_and_resumes(tmp_path):
    logdir, ckpt = str(tmp_path / "tb"), str(tmp_path / "ckpt")
    first = train(RULE, FAMILY, EST, num_steps=3, seed=1, progress=False, logdir=logdir,
                  checkpoint_path=ckpt, checkpoint_every=2, validate=_validate,
                  validate_every=2)
    events = read_events(logdir)
    for tag in ("meta_loss", "grad_norm", "skipped", "inner_loss", "inner_steps_per_s",
                "seconds_per_step"):
        assert sorted(events[tag]) == [0, 1, 2], tag
    for h in first.history:
        assert events["meta_loss"][h["step"]] == pytest.approx(h["meta_loss"], rel=1e-6)
        assert events["grad_norm"][h["step"]] == pytest.approx(h["grad_norm"], rel=1e-6)
        # 2 antithetic pairs × 2 halves × 3 steps per truncation, at the step's own pace.
        assert h["inner_steps"] == 12
        rate = events["inner_steps_per_s"][h["step"]]
        assert rate == pytest.approx(12 / events["seconds_per_step"][h["step"]], rel=1e-5)
    # Meta-validation every 2nd step and at the last one.
    assert sorted(events["valid/mean"]) == [1, 2]
    assert events["valid/mean"][2] == pytest.approx(first.history[2]["valid/mean"], rel=1e-6)

    # Resumed from the step-2 checkpoint: the first run's step 2 is purged, not doubled.
    import shutil
    shutil.rmtree(os.path.join(ckpt, "3"))
    again = train(RULE, FAMILY, EST, num_steps=5, seed=1, progress=False, logdir=logdir,
                  checkpoint_path=ckpt, checkpoint_every=2)
    assert [h["step"] for h in again.history] == [2, 3, 4]
    events = read_events(logdir)
    assert sorted(events["meta_loss"]) == [0, 1, 2, 3, 4]
    assert events["meta_loss"][2] == pytest.approx(again.history[0]["meta_loss"], rel=1e-6)
    assert sorted(events["valid/mean"]) == [1]  # the resumed run did not validate


def test_a_run_resumed_within_the_same_second_keeps_the_earlier_runs_events(tmp_path,
                                                                             monkeypatch):
    """tensorboardX names event files by the second: two writers in one second used to write
    one file, the resumed run's replacing the first run's steps (a flaky resume test)."""
    import time

    from lopt.files.metric_writers import TensorBoardWriter

    monkeypatch.setattr(time, "time", lambda: 1_700_000_000.0)
    logdir = str(tmp_path / "tb")
    for start, steps in ((0, (0, 1, 2)), (2, (2, 3))):
        writer = TensorBoardWriter(logdir, start)
        for step in steps:
            writer.write(step, {"meta_loss": float(step)})
        writer.close()
    assert sorted(read_events(logdir)["meta_loss"]) == [0, 1, 2, 3]
