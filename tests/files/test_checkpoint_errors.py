"""A checkpoint write that fails is reported once, in lopt's words: orbax's writer thread logs
nothing of it (under load the disk filled during its metadata write and it printed a 40-line
traceback before lopt's one line: issue 37's full-disk test). Fails on the code before the fix
(one ERROR record from orbax's writer thread)."""
import errno
import logging
from typing import NamedTuple

import jax.numpy as jnp
import pytest
from etils import epath

from lopt.files.checkpoints import open_checkpoints


class State(NamedTuple):  # a checkpoint holds a NamedTuple of fields, as TrainState
    theta: jnp.ndarray


def test_a_failed_metadata_write_is_one_oserror_and_logs_nothing(tmp_path, monkeypatch, caplog):
    store = open_checkpoints(str(tmp_path / "ckpt"))

    real = epath.Path.write_text

    def full(self, *args, **kwargs):  # the disk fills at orbax's last metadata write
        if self.name == "_METADATA":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(epath.Path, "write_text", full)
    with caplog.at_level(logging.INFO, logger="absl"):
        with pytest.raises(OSError, match="writing checkpoint 3 in .* failed: no space left"):
            store.save(State(jnp.ones(3)), {"step": 3})
        assert logging.getLogger("absl").level == logging.WARNING  # restored after the save
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
