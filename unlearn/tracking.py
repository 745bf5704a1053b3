"""TensorBoard event files for a run, written as it goes, local or on S3.

``ScalarLog(logdir)`` appends scalars to one event file (tensorboardX's record writer) in a local staging
directory and, after each ``flush``, copies the whole file to ``logdir`` (a local path or
``s3://``), so ``tensorboard --logdir`` (pointed at a local copy for S3) shows the run while it
trains. Each writer has its own file name, so a resumed run adds a file beside the old one and
TensorBoard merges them by step.

Tags: ``train/<name>`` for the optimizer step's numbers (losses, lr, grad norm, tokens/s) and
``eval/<name>`` for the evaluation's (forget quality, model utility, privleak, score and every
``unlearn.eval.flat_numbers`` name), with the epoch (1 = after the first) as the step.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from unlearn import storage

TRAIN_KEYS = (
    "forget_loss",
    "retain_loss",
    "loss",
    "lr",
    "grad_norm",
    "tokens_per_s",
    "step_time_s",
)
SKIP = {"epoch", "step", "at_step", "eval_epoch"}


def scalar_tags(metrics: dict[str, Any]) -> dict[str, float]:
    """TensorBoard tag -> value for one epoch's report (non-numbers dropped)."""
    out = {}
    for k, v in metrics.items():
        if k in SKIP or isinstance(v, bool) or not isinstance(v, int | float):
            continue
        if not math.isfinite(v):
            continue
        group = "train" if (k in TRAIN_KEYS or k.endswith("_loss")) else "eval"
        out[f"{group}/{k}"] = float(v)
    return out


class ScalarLog:
    """One TensorBoard event file under ``logdir`` (see the module docstring)."""

    def __init__(self, logdir: str, storage_options: dict[str, Any] | None = None):
        from tensorboardX.event_file_writer import EventsWriter

        self.logdir = logdir
        self.storage_options = storage_options
        self._local = Path(tempfile.mkdtemp(prefix="unlearn-tb-"))
        # the synchronous record writer (SummaryWriter queues events to a thread: a flush does
        # not wait for them, and a copy made right after would miss the last epoch)
        self._writer = EventsWriter(str(self._local / "events"))

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """Add one epoch's scalars at ``step`` and publish the event file."""
        from tensorboardX.proto.event_pb2 import Event
        from tensorboardX.summary import scalar

        now = time.time()
        for tag, value in scalar_tags(metrics).items():
            self._writer.write_event(Event(wall_time=now, step=step, summary=scalar(tag, value)))
        self.flush()

    def flush(self) -> None:
        """Write buffered events and copy the event file to ``logdir``."""
        self._writer.flush()
        for f in self._local.glob("events.out.tfevents.*"):
            # a whole-file replace (rename locally, one PUT on S3): readers never see half a file
            storage.write_bytes(
                storage.join(self.logdir, f.name), f.read_bytes(), self.storage_options
            )

    def close(self) -> None:
        """Flush and remove the staging directory."""
        self.flush()
        self._writer.close()
        shutil.rmtree(self._local, ignore_errors=True)
