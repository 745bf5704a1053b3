"""Where a worker runs: its rank, how it reports, where its last checkpoint is.

The loop talks to a ``Session``; ``LocalSession`` runs in one process (checkpoints on
local disk: the GPU benchmark and unit tests use it); the cluster shell provides its own.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import torch


class Session(Protocol):
    """The worker's environment, as the training loop sees it."""

    rank: int
    world_size: int
    device: torch.device

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None = None) -> None:
        """Report metrics (and a checkpoint directory) for this epoch; every rank calls it."""

    def latest_checkpoint(self) -> contextlib.AbstractContextManager[Path | None]:
        """The latest checkpoint's directory (or None) for the duration of the context."""

    def progress(self, info: dict[str, Any]) -> None:
        """Live progress from rank 0 (step, epoch, latest losses) for the driver's progress bar."""


class LocalSession:
    """A single-process session: checkpoints are kept under ``root/epoch_N``."""

    def __init__(self, root: str | Path, device: str | torch.device = "cpu", keep: int = 2):
        self.root = Path(root)
        self.rank = 0
        self.world_size = 1
        self.device = torch.device(device)
        self.keep = keep
        self.reports: list[dict[str, Any]] = []

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None = None) -> None:
        """Keep metrics; copy the checkpoint under root and prune old ones."""
        self.reports.append(dict(metrics))
        if checkpoint_dir is None:
            return
        dest = self.root / f"epoch_{metrics['epoch']:04d}"
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(checkpoint_dir, dest)
        for old in sorted(self.root.glob("epoch_*"))[: -self.keep]:
            shutil.rmtree(old)

    @contextlib.contextmanager
    def latest_checkpoint(self) -> Iterator[Path | None]:
        """The newest ``epoch_N`` directory, if any."""
        found = sorted(self.root.glob("epoch_*"))
        yield found[-1] if found else None

    def progress(self, info: dict[str, Any]) -> None:
        """Local runs print nothing per step."""
