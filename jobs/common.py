"""What the Ray training jobs share: Ray start-up, the Ray Train session, the driver's progress bar.

The per-worker work is ``unlearn.engine.loop.train``; this file only adapts it to Ray Train.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ray
import ray.train
import torch

from unlearn import storage
from unlearn.config import build, to_dict
from unlearn.data import Dataset
from unlearn.engine import run_dir
from unlearn.engine.config import RunConfig
from unlearn.engine.loop import data_hashes, train

# Test hook for resilience: with UNLEARN_FAULT_AFTER_EPOCH=E and UNLEARN_FAULT_MARKER=path, the
# last worker exits hard at the end of epoch E+1 (before reporting it), once per marker file.
FAULT_EPOCH = "UNLEARN_FAULT_AFTER_EPOCH"
FAULT_MARKER = "UNLEARN_FAULT_MARKER"


def init_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Connect to a cluster (``address`` or RAY_ADDRESS), else start an embedded local one on loopback."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    # keep the node and gloo's MASTER_ADDR on 127.0.0.1 on a single machine (see ray.md)
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "120")
    # Worker logs are noise around the progress bar; failures still surface as exceptions with
    # the worker's traceback. UNLEARN_RAY_LOGS=1 streams them.
    logs = os.environ.get("UNLEARN_RAY_LOGS") == "1"
    if address:
        ray.init(address=address, log_to_driver=logs)
    else:
        ray.init(
            # "local": always start an embedded cluster, never join one a `ray start` left behind
            address="local",
            num_cpus=num_cpus or os.cpu_count(),
            include_dashboard=False,
            log_to_driver=logs,
            _node_ip_address="127.0.0.1",
        )


@ray.remote(num_cpus=0)
class ProgressBoard:
    """Latest progress record from rank 0, polled by the driver's progress bar."""

    def __init__(self) -> None:
        self.latest: dict[str, Any] = {}

    def update(self, info: dict[str, Any]) -> None:
        """Store the latest record."""
        self.latest = info

    def get(self) -> dict[str, Any]:
        """The latest record."""
        return self.latest


class RaySession:
    """The engine's Session inside a Ray Train worker."""

    def __init__(self, board: Any = None):
        ctx = ray.train.get_context()
        self.rank = ctx.get_world_rank()
        self.world_size = ctx.get_world_size()
        self.device = ray.train.torch.get_device()
        self.board = board

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None = None) -> None:
        """ray.train.report (a barrier: every rank calls it once per epoch)."""
        self._maybe_fault(metrics.get("epoch"))
        checkpoint = (
            ray.train.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        )
        ray.train.report(metrics, checkpoint=checkpoint)

    def _maybe_fault(self, epoch: int | None) -> None:
        # Dies one epoch after the named one, so that epoch's checkpoint is surely registered and
        # the work of the epoch in flight is lost, as in a real crash.
        fault_epoch, marker = os.environ.get(FAULT_EPOCH), os.environ.get(FAULT_MARKER)
        if (
            fault_epoch is None
            or not marker
            or epoch != int(fault_epoch) + 1
            or os.path.exists(marker)
        ):
            return
        if self.rank == self.world_size - 1:
            # Ray Train's controller collects reports every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S (2 s):
            # a checkpoint reported just before a crash is not registered yet. Real epochs last
            # far longer; these test epochs last 0.1 s, so wait for the poll first.
            time.sleep(3 * float(os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "2")))
            Path(marker).write_text("fault injected\n")
            os._exit(1)

    @contextlib.contextmanager
    def latest_checkpoint(self) -> Iterator[Path | None]:
        """The restored checkpoint's directory, if Ray Train restored one."""
        ckpt = ray.train.get_checkpoint()
        if ckpt is None:
            yield None
            return
        with ckpt.as_directory() as d:
            yield Path(d)

    def progress(self, info: dict[str, Any]) -> None:
        """Send the record to the driver's board (fire and forget)."""
        if self.board is not None:
            self.board.update.remote(info)


def train_worker(config: dict[str, Any]) -> None:
    """Ray Train's per-worker function: rebuild the typed config, join DeepSpeed to Ray's group, train."""
    cfg = build(RunConfig, config["run"])
    if cfg.backend.kind == "deepspeed":
        import deepspeed

        deepspeed.init_distributed(
            "nccl" if torch.cuda.is_available() and cfg.scaling.use_gpu else "gloo"
        )
    train(cfg, RaySession(config.get("board")))


def storage_for(cfg: RunConfig) -> tuple[str, Any]:
    """Ray Train storage (path, filesystem) under the run dir; s3:// goes through s3fs."""
    location = run_dir.path(cfg, "checkpoints")
    if storage.is_remote(location):
        import pyarrow.fs

        # The filesystem is pickled to Ray Train's controller actor, which does not see the
        # driver's environment: carry the driver's endpoint, region and credentials explicitly
        # (unless storage_options name them), as the driver reached the bucket with them.
        options = dict(cfg.output.storage_options or {})
        env = os.environ
        if "key" not in options and env.get("AWS_ACCESS_KEY_ID"):
            options.update(key=env["AWS_ACCESS_KEY_ID"], secret=env.get("AWS_SECRET_ACCESS_KEY"))
            if env.get("AWS_SESSION_TOKEN"):
                options["token"] = env["AWS_SESSION_TOKEN"]
        fs, inner = storage.filesystem(location, options)
        return inner, pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(fs))
    return str(Path(location).resolve()), None


def absolute_paths(cfg: RunConfig) -> RunConfig:
    """Local paths made absolute: Ray workers do not run in the driver's working directory."""
    import dataclasses

    def fix(p: str) -> str:
        return p if not p or storage.is_remote(p) else str(Path(p).resolve())

    return dataclasses.replace(
        cfg,
        data=dataclasses.replace(cfg.data, path=fix(cfg.data.path)),
        model=dataclasses.replace(cfg.model, path=fix(cfg.model.path)),
        output=dataclasses.replace(cfg.output, dir=fix(cfg.output.dir)),
    )


def run_training(
    cfg: RunConfig, *, address: str | None = None, show_progress: bool = True
) -> dict[str, Any]:
    """Drive one Ray Train run and return its run.json summary."""
    from ray.train.torch import TorchTrainer

    cfg = absolute_paths(cfg)

    dataset = Dataset(cfg.data.path, cfg.data.storage_options)
    mode = run_dir.prepare(cfg, data_hashes(cfg, dataset))
    init_ray(address)
    board = ProgressBoard.remote()
    path, fs = storage_for(cfg)
    env = {
        "DS_ACCELERATOR": "cuda" if cfg.scaling.use_gpu else "cpu",
        "TOKENIZERS_PARALLELISM": "false",
    }
    env.update({k: v for k, v in os.environ.items() if k.startswith(("AWS_", "UNLEARN_", "HF_"))})
    trainer = TorchTrainer(
        train_worker,
        train_loop_config={"run": to_dict(cfg), "board": board},
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.scaling.num_workers,
            use_gpu=cfg.scaling.use_gpu,
            resources_per_worker={
                "CPU": cfg.scaling.cpus_per_worker,
                **({"GPU": 1} if cfg.scaling.use_gpu else {}),
            },
        ),
        run_config=ray.train.RunConfig(
            name="train",  # derived from the run dir, never a timestamp: re-running resumes
            storage_path=path,
            storage_filesystem=fs,
            failure_config=ray.train.FailureConfig(max_failures=cfg.scaling.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=cfg.output.keep_checkpoints),
            worker_runtime_env={"env_vars": env},
        ),
    )
    if mode == "resume":
        print(f"resuming the unfinished run in {cfg.output.dir}")
    result: dict[str, Any] = {}

    def fit() -> None:
        try:
            result["result"] = trainer.fit()
        except BaseException as exc:  # re-raised on the driver thread below
            result["error"] = exc

    thread = threading.Thread(target=fit, daemon=True)
    thread.start()
    watch_progress(thread, board, cfg, show_progress)
    if "error" in result:
        raise result["error"]
    return run_dir.read_json(run_dir.path(cfg, run_dir.RUN_FILE), cfg.output.storage_options)


def watch_progress(thread: threading.Thread, board: Any, cfg: RunConfig, show: bool) -> None:
    """A tqdm bar over optimizer steps with epoch and the latest losses, until ``thread`` ends."""
    from tqdm import tqdm

    # on a terminal the bar redraws in place; in a log file, a line every 30 s is enough
    tty = sys.stderr.isatty()
    bar = tqdm(
        total=None,
        desc=cfg.method.name,
        unit="step",
        disable=not show,
        dynamic_ncols=tty,
        mininterval=0.1 if tty else 30.0,
    )
    while thread.is_alive():
        thread.join(timeout=0.5)
        try:
            info = ray.get(board.get.remote(), timeout=5)
        except Exception:  # the board is best-effort; training goes on without it
            continue
        if info:
            bar.total = info.get("total_steps")
            bar.n = info.get("step", 0)
            losses = {k: f"{v:.3f}" for k, v in info.items() if k.endswith("_loss")}
            bar.set_postfix(epoch=info.get("epoch"), lr=f"{info.get('lr', 0):.2e}", **losses)
            bar.refresh()
    bar.close()


def job_main(
    prog: str,
    doc: str | None,
    argv: list[str] | None,
    *,
    fixed: dict[str, Any] | None = None,
    check: Any = None,
) -> int:
    """The command line every training job shares: ``--config FILE [--address A] [--overwrite]
    key=value ...``; ``fixed`` keys are set by the job itself (a config naming another value is
    refused), ``check(cfg)`` may refuse the config. Nothing starts before the config is valid."""
    import argparse
    import json

    from unlearn.config import load_config

    parser = argparse.ArgumentParser(
        prog=prog, description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--config", help="YAML run config (local or s3://)")
    parser.add_argument(
        "--address", help="Ray cluster address (default: RAY_ADDRESS or a local Ray)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a finished run in output.dir"
    )
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.epochs=20")
    args = parser.parse_args(argv)
    overrides = [*args.overrides] + (["output.overwrite=true"] if args.overwrite else [])
    cfg = load_config(RunConfig, args.config, overrides, fixed=fixed)
    if check is not None:
        check(cfg)
    summary = run_training(cfg, address=args.address)
    print(json.dumps(summary, indent=2))
    return 0
