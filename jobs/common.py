"""What the Ray training jobs share: Ray start-up, the Ray Train session, the driver's progress bar.

The per-worker work is ``unlearn.engine.loop.train``; this file only adapts it to Ray Train.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.fs
import ray
import ray.train
import torch

from unlearn import storage
from unlearn.config import build, to_dict
from unlearn.engine import run_dir
from unlearn.engine.config import RunConfig
from unlearn.engine.inputs import check_run
from unlearn.engine.loop import train
from unlearn.errors import RunFailedError, describe

# Test hooks for resilience, inert unless their variables are set (once per marker file):
# - UNLEARN_FAULT_AFTER_EPOCH=E, UNLEARN_FAULT_MARKER=path: the last worker exits hard at the end
#   of epoch E+1, before reporting it;
# - the same plus UNLEARN_FAULT_UPLOAD_AFTER_FILES=N: rank 0 exits hard in the middle of uploading
#   epoch E+1's checkpoint to S3, after N of its files were written there;
# - UNLEARN_HOLD_AFTER_EPOCH=E[,E2...], UNLEARN_HOLD_FILE=path: every worker writes
#   path.<E>.rank<R> (pid, node id) at the end of epoch E+1 and waits there until path.<E> exists
#   (for each listed E), so that a test can kill a worker, a node or the driver at known points of
#   the run.
FAULT_EPOCH = "UNLEARN_FAULT_AFTER_EPOCH"
FAULT_MARKER = "UNLEARN_FAULT_MARKER"
FAULT_UPLOAD = "UNLEARN_FAULT_UPLOAD_AFTER_FILES"
HOLD_EPOCH = "UNLEARN_HOLD_AFTER_EPOCH"
HOLD_FILE = "UNLEARN_HOLD_FILE"

# Every rank adds its completion manifest to the checkpoint it reports: the files it wrote and
# their sizes. Ray Train merges all ranks' files into one checkpoint directory in storage; a
# checkpoint is complete when the manifests of ranks 0..W-1 are there and every file they list is
# there with its size. Resume takes the newest complete one (an interrupted upload, a lost object,
# a rank that died while uploading all leave an incomplete one behind, which is skipped).
MANIFEST_GLOB = ".unlearn-rank-*-of-*.json"


def init_ray(
    address: str | None = None,
    num_cpus: int | None = None,
    *,
    dashboard: bool = False,
    dashboard_port: int | None = None,
) -> None:
    """Connect to a cluster (``address`` or RAY_ADDRESS), else start an embedded local one on loopback.

    ``dashboard=True`` (what Tune driving Train needs, see docs/architecture.md) starts the local
    Ray with its dashboard on 127.0.0.1 (``dashboard_port``, default a free port), and points
    every Ray process's State API at it: Train's placement-group cleaner polls the State API, and
    without a dashboard (or when it finds another Ray instance on the host) a trial stopped early
    leaks its workers' placement group and the next trial waits forever.
    """
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
        return
    kwargs: dict[str, Any] = {"include_dashboard": False}
    if dashboard:
        port = dashboard_port or free_port()
        # inherited by the raylet and so by every worker and actor of this local cluster
        os.environ["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{port}"
        kwargs = {"include_dashboard": True, "dashboard_host": "127.0.0.1", "dashboard_port": port}
    ray.init(
        # "local": a new instance even when another one on this host was started with `ray
        # start` (ray.init() would join that one through /tmp/ray/ray_current_cluster)
        address="local",
        num_cpus=num_cpus or os.cpu_count(),
        log_to_driver=logs,
        _node_ip_address="127.0.0.1",
        **kwargs,
    )


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dashboard_url() -> str | None:
    """The running cluster's dashboard address (host:port), None when it runs without one."""
    from ray._private import ray_constants
    from ray.experimental import internal_kv

    value = internal_kv._internal_kv_get(
        ray_constants.DASHBOARD_ADDRESS, namespace=ray_constants.KV_NAMESPACE_DASHBOARD
    )
    return value.decode() if value else None


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
        """ray.train.report (a barrier: every rank calls it once per epoch), the checkpoint with
        this rank's completion manifest."""
        epoch = metrics.get("epoch")
        self._maybe_hold(epoch)
        upload_fault = self._maybe_fault(epoch)
        checkpoint = None
        if checkpoint_dir:
            write_manifest(Path(checkpoint_dir), self.rank, self.world_size, metrics)
            checkpoint = ray.train.Checkpoint.from_directory(str(checkpoint_dir))
            if upload_fault is not None:
                _UPLOAD_FAULT.update(upload_fault)
        ray.train.report(metrics, checkpoint=checkpoint)

    def _maybe_fault(self, epoch: int | None) -> dict[str, Any] | None:
        # Dies one epoch after the named one, so that epoch's checkpoint is surely registered and
        # the work of the epoch in flight is lost, as in a real crash.
        fault_epoch, marker = os.environ.get(FAULT_EPOCH), os.environ.get(FAULT_MARKER)
        if (
            fault_epoch is None
            or not marker
            or epoch != int(fault_epoch) + 1
            or os.path.exists(marker)
        ):
            return None
        upload = os.environ.get(FAULT_UPLOAD)
        if self.rank == (0 if upload else self.world_size - 1):
            # Ray Train's controller collects reports every RAY_TRAIN_HEALTH_CHECK_INTERVAL_S (2 s):
            # a checkpoint reported just before a crash is not registered yet. Real epochs last
            # far longer; these test epochs last 0.1 s, so wait for the poll first.
            time.sleep(3 * float(os.environ.get("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "2")))
            if upload:
                return {"left": int(upload), "marker": marker}
            Path(marker).write_text("fault injected\n")
            os._exit(1)
        return None

    def _maybe_hold(self, epoch: int | None) -> None:
        hold_epochs, hold_file = os.environ.get(HOLD_EPOCH), os.environ.get(HOLD_FILE)
        if not hold_epochs or not hold_file or epoch is None:
            return
        if epoch - 1 not in {int(e) for e in hold_epochs.split(",")}:
            return
        release = f"{hold_file}.{epoch - 1}"
        if os.path.exists(release):
            return
        info = {
            "rank": self.rank,
            "pid": os.getpid(),
            "node_id": ray.get_runtime_context().get_node_id(),
        }
        Path(f"{release}.rank{self.rank}").write_text(json.dumps(info))
        while not os.path.exists(release):
            time.sleep(0.2)

    @contextlib.contextmanager
    def latest_checkpoint(self) -> Iterator[Path | None]:
        """The newest complete checkpoint's directory: the one Ray Train restored, else (when
        that one is incomplete) the newest complete one before it in storage; None if none."""
        ckpt = ray.train.get_checkpoint()
        if ckpt is None:
            yield None
            return
        for candidate in [ckpt, *older_checkpoints(ckpt)]:
            with candidate.as_directory() as d:
                problem = checkpoint_problem(Path(d))
                if problem is None:
                    if candidate is not ckpt and self.rank == 0:
                        print(f"resuming from the older complete checkpoint {candidate.path}")
                    yield Path(d)
                    return
            if self.rank == 0:
                print(f"warning: ignoring incomplete checkpoint {candidate.path}: {problem}")
        if self.rank == 0:
            print("warning: no complete checkpoint in storage; the run starts over")
        yield None

    def progress(self, info: dict[str, Any]) -> None:
        """Send the record to the driver's board (fire and forget)."""
        if self.board is not None:
            self.board.update.remote(info)


def write_manifest(directory: Path, rank: int, world_size: int, metrics: dict[str, Any]) -> Path:
    """This rank's completion manifest in its checkpoint directory: its files and their sizes."""
    files = {
        p.relative_to(directory).as_posix(): p.stat().st_size
        for p in sorted(directory.rglob("*"))
        if p.is_file() and not p.match(MANIFEST_GLOB)
    }
    doc = {
        "rank": rank,
        "world_size": world_size,
        "epoch": metrics.get("epoch"),
        "step": metrics.get("step"),
        "files": files,
    }
    path = directory / f".unlearn-rank-{rank:05d}-of-{world_size:05d}.json"
    path.write_text(json.dumps(doc, indent=1, sort_keys=True))
    return path


def checkpoint_problem(directory: Path) -> str | None:
    """Why a checkpoint directory is incomplete (None when every rank's manifest and every file
    it lists are there, with their sizes)."""
    manifests = sorted(directory.glob(MANIFEST_GLOB))
    if not manifests:
        return f"no completion manifest ({MANIFEST_GLOB})"
    docs = []
    for m in manifests:
        try:
            docs.append(json.loads(m.read_text()))
        except ValueError:
            return f"{m.name} is not valid JSON"
    sizes = {d.get("world_size") for d in docs}
    epochs = {d.get("epoch") for d in docs}
    if len(sizes) != 1 or len(epochs) != 1:
        return f"manifests of different runs (world sizes {sizes}, epochs {epochs})"
    (world,) = sizes
    missing = sorted(set(range(world)) - {d.get("rank") for d in docs})
    if missing:
        return f"rank(s) {missing} of {world} never finished writing it"
    for d in docs:
        for rel, size in d["files"].items():
            f = directory / rel
            if not f.is_file():
                return f"{rel} (rank {d['rank']}) is missing"
            if f.stat().st_size != size:
                return f"{rel} (rank {d['rank']}) has {f.stat().st_size} bytes, {size} expected"
    return None


def older_checkpoints(ckpt: Any) -> list[Any]:
    """The checkpoints stored before ``ckpt`` in its run's storage, newest first."""
    import posixpath

    parent, name = posixpath.split(ckpt.path.rstrip("/"))
    try:
        infos = ckpt.filesystem.get_file_info(pyarrow.fs.FileSelector(parent))
    except (OSError, FileNotFoundError):
        return []
    names = sorted(
        (
            i.base_name
            for i in infos
            if i.type == pyarrow.fs.FileType.Directory
            and i.base_name.startswith("checkpoint_")
            and i.base_name < name
        ),
        reverse=True,
    )
    return [ray.train.Checkpoint(posixpath.join(parent, n), ckpt.filesystem) for n in names]


# rank 0's armed upload fault (UNLEARN_FAULT_UPLOAD_AFTER_FILES), read by _FaultyUploads
_UPLOAD_FAULT: dict[str, Any] = {}


def _upload_tick(path: str) -> None:
    if not _UPLOAD_FAULT or "/checkpoint_" not in path:
        return
    if _UPLOAD_FAULT["left"] <= 0:
        Path(_UPLOAD_FAULT["marker"]).write_text(f"upload interrupted before {path}\n")
        os._exit(1)
    _UPLOAD_FAULT["left"] -= 1


class FaultyUploads(pyarrow.fs.FSSpecHandler):
    """pyarrow's fsspec handler that counts the files written under a checkpoint and dies
    midway once the upload fault is armed (test hook; used only when FAULT_UPLOAD is set)."""

    def open_output_stream(self, path: str, metadata: Any) -> Any:
        """Count, maybe die, then open as usual."""
        _upload_tick(path)
        return super().open_output_stream(path, metadata)


def _storage_handler(fs: Any) -> pyarrow.fs.FSSpecHandler:
    handler = FaultyUploads if os.environ.get(FAULT_UPLOAD) else pyarrow.fs.FSSpecHandler
    return handler(fs)


def train_worker(config: dict[str, Any]) -> None:
    """Ray Train's per-worker function: rebuild the typed config, join DeepSpeed to Ray's group, train.

    ``config["session"]`` may name another Session class (a RaySession subclass, e.g. the sweep's)
    and ``config["session_args"]`` its extra arguments."""
    cfg = build(RunConfig, config["run"])
    if cfg.backend.kind == "deepspeed":
        import deepspeed

        deepspeed.init_distributed(
            "nccl" if torch.cuda.is_available() and cfg.scaling.use_gpu else "gloo"
        )
    session_class = config.get("session") or RaySession
    train(cfg, session_class(config.get("board"), **(config.get("session_args") or {})))


class TensorBoardCallback(ray.train.UserCallback):
    """Ray Train callback (runs in the controller): each epoch's report into TensorBoard event
    files under ``logdir`` (``unlearn.tracking.ScalarLog``: loss terms, lr, grad norm, forget
    quality, model utility, privleak, score, ...), the epoch as the step."""

    def __init__(
        self, logdir: str, storage_options: dict | None = None, epoch_offset: int = 1
    ) -> None:
        self.logdir = logdir
        # made on the driver, used in the controller actor: carry the driver's S3 access
        remote = storage.is_remote(logdir)
        self.storage_options = (
            carried_storage_options(storage_options) if remote else storage_options
        )
        self.epoch_offset = epoch_offset  # the engine's epoch is 0-based: step 1 = first epoch
        self._log: Any = None

    def after_report(self, run_context: Any, metrics: list, checkpoint: Any) -> None:
        """Write rank 0's metrics (best-effort: TensorBoard never fails a run)."""
        try:
            if self._log is None:
                from unlearn.tracking import ScalarLog

                self._log = ScalarLog(self.logdir, self.storage_options)
            m = metrics[0]
            self._log.log(m, int(m.get("epoch", 0)) + self.epoch_offset)
        except Exception as exc:  # noqa: BLE001
            print(f"warning: TensorBoard logging to {self.logdir} failed: {exc}", file=sys.stderr)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_log": None}  # the writer stays in the process that made it


def carried_storage_options(options: dict | None) -> dict[str, Any]:
    """S3 options that work in another Ray process: Train's controller actor does not see the
    driver's environment, so the driver's endpoint, region and credentials are carried explicitly
    (unless ``options`` name them), as the driver reached the bucket with them."""
    options = dict(options or {})
    env = os.environ
    if "key" not in options and env.get("AWS_ACCESS_KEY_ID"):
        options.update(key=env["AWS_ACCESS_KEY_ID"], secret=env.get("AWS_SECRET_ACCESS_KEY"))
        if env.get("AWS_SESSION_TOKEN"):
            options["token"] = env["AWS_SESSION_TOKEN"]
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint and "endpoint_url" not in options:
        options["endpoint_url"] = endpoint
    return options


def storage_for(cfg: RunConfig) -> tuple[str, Any]:
    """Ray Train storage (path, filesystem) under the run dir; s3:// goes through s3fs."""
    location = run_dir.path(cfg, "checkpoints")
    if storage.is_remote(location):
        import pyarrow.fs

        # the filesystem is pickled to Ray Train's controller actor
        options = carried_storage_options(cfg.output.storage_options)
        fs, inner = storage.filesystem(location, options)
        return inner, pyarrow.fs.PyFileSystem(_storage_handler(fs))
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


def prepare_run(cfg: RunConfig) -> str:
    """Check everything the run reads (``unlearn.engine.inputs.check_run``, no Ray needed) and
    record the run dir in place (``unlearn.engine.run_dir.prepare``): "new" or "resume"."""
    return run_dir.prepare(cfg, check_run(cfg))


def make_trainer(
    cfg: RunConfig,
    *,
    board: Any = None,
    callbacks: list[Any] | None = None,
    session: type | None = None,
    session_args: dict[str, Any] | None = None,
    tensorboard: bool = True,
) -> Any:
    """The ``TorchTrainer`` of one run: workers as ``cfg.scaling`` says, checkpoints under the run
    dir (``RunConfig(name="train")``: re-running resumes), TensorBoard events in
    ``<run>/tensorboard`` unless ``tensorboard=False``, plus ``callbacks``."""
    from ray.train.torch import TorchTrainer

    path, fs = storage_for(cfg)
    env = {
        "DS_ACCELERATOR": "cuda" if cfg.scaling.use_gpu else "cpu",
        "TOKENIZERS_PARALLELISM": "false",
    }
    env.update({k: v for k, v in os.environ.items() if k.startswith(("AWS_", "UNLEARN_", "HF_"))})
    callbacks = list(callbacks or [])
    if tensorboard:
        callbacks.append(
            TensorBoardCallback(run_dir.path(cfg, "tensorboard"), cfg.output.storage_options)
        )
    return TorchTrainer(
        train_worker,
        train_loop_config={
            "run": to_dict(cfg),
            "board": board,
            "session": session,
            "session_args": session_args,
        },
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
            callbacks=callbacks,
        ),
    )


def failure_reason(exc: BaseException) -> str:
    """One line saying why a training run failed (the first worker's error, unwrapped)."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    failures = getattr(exc, "worker_failures", None) or {}
    if failures:
        rank, err = sorted(failures.items(), key=lambda kv: kv[0])[0]
        err = getattr(err, "cause", None) or err
        return f"worker {rank}: {describe(err) or f'{type(err).__name__}: {err}'}".splitlines()[0]
    err = getattr(exc, "cause", None) or getattr(exc, "controller_failure", None) or exc
    return (describe(err) or f"{type(err).__name__}: {err}").splitlines()[0]


def run_training(
    cfg: RunConfig, *, address: str | None = None, show_progress: bool = True
) -> dict[str, Any]:
    """Drive one Ray Train run and return its run.json summary.

    Everything the run reads is checked first (``unlearn.engine.inputs.check_run``), before Ray
    starts or anything is written. With ``output.overwrite`` an existing run is replaced only once
    the new one (built beside it) has finished; a run that fails otherwise is recorded as failed
    in run.json.
    """
    cfg = absolute_paths(cfg)
    inputs = check_run(cfg)
    planned = run_dir.plan(cfg, inputs)
    work = planned.cfg  # output.dir is a staging directory when an old run is being replaced
    try:
        init_ray(address)
        board = ProgressBoard.remote()
        trainer = make_trainer(work, board=board)
        if planned.mode == "resume":
            why = f" (it failed: {planned.previous['reason']})" if planned.previous else ""
            print(f"resuming the unfinished run in {cfg.output.dir}{why}")
        result: dict[str, Any] = {}

        def fit() -> None:
            try:
                result["result"] = trainer.fit()
            except BaseException as exc:  # re-raised on the driver thread below
                result["error"] = exc

        thread = threading.Thread(target=fit, daemon=True)
        thread.start()
        watch_progress(thread, board, work, show_progress)
        if "error" in result:
            raise result["error"]
    except BaseException as exc:
        if planned.staged:
            run_dir.discard(planned)
        else:
            run_dir.record_failure(work, failure_reason(exc))
        raise
    run_dir.publish(planned)
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


def parse_job_args(
    prog: str,
    doc: str | None,
    argv: list[str] | None,
    *,
    fixed: dict[str, Any] | None = None,
    check: Any = None,
) -> tuple[Any, RunConfig]:
    """The command line every training job shares: ``--config FILE [--address A] [--overwrite]
    key=value ...`` parsed into ``(args, checked config)``; ``fixed`` keys are set by the job itself
    (a config naming another value is refused), ``check(cfg)`` may refuse the config. No side
    effects: ``unlearn submit`` checks a job's arguments with it before sending them to a cluster."""
    import argparse

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
    args = parser.parse_intermixed_args(argv)  # options and key=value overrides in any order
    overrides = [*args.overrides] + (["output.overwrite=true"] if args.overwrite else [])
    cfg = load_config(RunConfig, args.config, overrides, fixed=fixed)
    if check is not None:
        check(cfg)
    return args, cfg


def job_main(
    prog: str,
    doc: str | None,
    argv: list[str] | None,
    *,
    fixed: dict[str, Any] | None = None,
    check: Any = None,
) -> int:
    """A training job's main: parse (``parse_job_args``; nothing starts before the config is
    valid), train, print the run summary."""
    args, cfg = parse_job_args(prog, doc, argv, fixed=fixed, check=check)
    try:
        summary = run_training(cfg, address=args.address)
    except ray.train.TrainingFailedError as exc:
        where = run_dir.path(absolute_paths(cfg), run_dir.RUN_FILE)
        raise RunFailedError(
            f"the run failed: {failure_reason(exc)}. {where} records it; fix the cause and run "
            "the same command again to resume from the last checkpoint"
        ) from exc
    print(json.dumps(summary, indent=2))
    return 0
