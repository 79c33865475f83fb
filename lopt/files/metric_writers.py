"""Where meta-training's scalars go besides its JSONL log: TensorBoard event files
(``tensorboardX``, which writes them without TensorFlow) and Weights & Biases (``wandb``, an
optional extra). A writer is anything with ``write(step, scalars)`` and ``close()``
(``MetricWriter``; ``lopt.outer.RunFiles.writers`` takes any)."""
from __future__ import annotations

import math
import os
import uuid
from typing import Optional, Protocol


class MetricWriter(Protocol):
    def write(self, step: int, scalars: dict) -> None: ...

    def close(self) -> None: ...


class TensorBoardWriter:
    """Scalars as TensorBoard events in ``logdir``, one tag per metric name (``valid/mean``
    and ``meta_loss/FAMILY`` group under their prefix). ``start``: the step a resumed run
    continues from — events an earlier run wrote at or after it are purged when read, so a
    resumed run's curves do not double back."""

    def __init__(self, logdir: str, start: int = 0):
        try:
            from tensorboardX import SummaryWriter
        except ImportError as err:  # a dependency of lopt; only a broken install lacks it
            raise RuntimeError(f"logdir needs the tensorboardX package ({err})") from None
        os.makedirs(logdir, exist_ok=True)
        self.logdir = logdir
        # tensorboardX names a file by the second and the host only: a run resumed within the
        # same second would overwrite the earlier run's file. A suffix of its own keeps both.
        self._writer = SummaryWriter(logdir=logdir, purge_step=start if start > 0 else None,
                                     flush_secs=30,
                                     filename_suffix=f".{os.getpid()}.{uuid.uuid4().hex[:8]}")

    def write(self, step: int, scalars: dict) -> None:
        for name, value in scalars.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self._writer.add_scalar(name, float(value), step)

    def close(self) -> None:
        self._writer.close()


class WandbWriter:
    """Scalars logged to a Weights & Biases run (``wandb.init(**init)``), resumed by ``id``
    when given."""

    def __init__(self, **init):
        try:
            import wandb
        except ImportError:
            raise RuntimeError("wandb needs the wandb package: pip install 'lopt[wandb]'") \
                from None
        self._run = wandb.init(**init)

    def write(self, step: int, scalars: dict) -> None:
        self._run.log({k: v for k, v in scalars.items()
                       if isinstance(v, (int, float)) and math.isfinite(v)}, step=step)

    def close(self) -> None:
        self._run.finish()


def wandb_available() -> bool:
    try:
        import wandb  # noqa: F401
    except ImportError:
        return False
    return True


def open_writers(logdir: Optional[str], start: int, extra=()) -> list:
    """The writers of one run: TensorBoard in ``logdir`` when given, then ``extra``."""
    writers = [TensorBoardWriter(logdir, start)] if logdir else []
    return writers + list(extra)
