"""Nothing lost: a checkpoint counts only once every rank's completion manifest and every file it
lists are in storage; an S3 upload interrupted midway leaves a checkpoint resume skips, and the
run still ends where an uninterrupted one ends."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow.fs
import pytest

from jobs.common import MANIFEST_GLOB, checkpoint_problem, older_checkpoints, write_manifest
from tests.cluster.helpers import assert_same_result, history, resumes, run_overrides, run_summary
from unlearn import storage


def checkpoint(tmp_path: Path, world: int = 2, epoch: int = 3) -> Path:
    """A checkpoint as two ranks leave it in storage: rank 0 the weights, rank 1 its shard."""
    d = tmp_path / "checkpoint_2026-01-01_00-00-03.000000"
    d.mkdir(parents=True)
    for rank in range(world):
        own = tmp_path / f"rank{rank}"
        own.mkdir()
        (own / f"shard_{rank}.pt").write_bytes(b"x" * (100 + rank))
        if rank == 0:
            (own / "trainer_state.json").write_text(json.dumps({"epoch": epoch}))
        write_manifest(own, rank, world, {"epoch": epoch, "step": 6})
        for f in own.iterdir():
            (d / f.name).write_bytes(f.read_bytes())  # Ray Train merges the ranks' files
    return d


def test_a_complete_checkpoint_passes(tmp_path):
    d = checkpoint(tmp_path)
    assert checkpoint_problem(d) is None
    manifests = sorted(p.name for p in d.glob(MANIFEST_GLOB))
    assert manifests == [".unlearn-rank-00000-of-00002.json", ".unlearn-rank-00001-of-00002.json"]
    doc = json.loads((d / manifests[0]).read_text())
    assert (
        doc["files"] == {"shard_0.pt": 100, "trainer_state.json": len('{"epoch": 3}')}
        and doc["epoch"] == 3
    )


@pytest.mark.parametrize(
    "damage, reason",
    [
        (lambda d: (d / ".unlearn-rank-00001-of-00002.json").unlink(), "rank(s) [1] of 2 never finished"),
        (lambda d: (d / "shard_1.pt").unlink(), "shard_1.pt (rank 1) is missing"),
        (lambda d: (d / "shard_0.pt").write_bytes(b"x" * 7), "shard_0.pt (rank 0) has 7 bytes, 100 expected"),
        (lambda d: (d / ".unlearn-rank-00000-of-00002.json").write_text("{"), "is not valid JSON"),
        (lambda d: [p.unlink() for p in d.glob(MANIFEST_GLOB)], "no completion manifest"),
    ],
    ids=["rank-missing", "file-missing", "file-truncated", "manifest-corrupt", "no-manifest"],
)  # fmt: skip
def test_an_incomplete_checkpoint_is_named(tmp_path, damage, reason):
    d = checkpoint(tmp_path)
    damage(d)
    assert reason in checkpoint_problem(d)


def test_older_checkpoints_are_found_newest_first(tmp_path):
    import ray.train

    names = [f"checkpoint_2026-01-01_00-00-0{i}.000000" for i in range(4)]
    for n in names:
        (tmp_path / n).mkdir()
    (tmp_path / "checkpoint_manager_snapshot.json").write_text("{}")
    latest = ray.train.Checkpoint(str(tmp_path / names[2]), pyarrow.fs.LocalFileSystem())
    found = [Path(c.path).name for c in older_checkpoints(latest)]
    assert found == [names[1], names[0]]  # not the latest itself, nor anything newer


# ---------------------------------------------------------------------------------------------
# For real: Ray Train workers uploading to the moto S3 server


@pytest.fixture(scope="module")
def bucket(s3_server):
    import uuid

    import s3fs

    name = f"ckpt-{uuid.uuid4().hex[:8]}"
    s3fs.S3FileSystem(endpoint_url=s3_server, skip_instance_cache=True).mkdir(name)
    return f"s3://{name}"


@pytest.fixture(scope="module")
def baseline(ray_local, bucket, tiny_data, nano_model_dir):
    """The uninterrupted run every interrupted one here must end like (same config and seed)."""
    from jobs.common import run_training
    from unlearn.config import load_config
    from unlearn.engine.config import RunConfig

    out = f"{bucket}/baseline"
    cfg = load_config(RunConfig, None, run_overrides(tiny_data, nano_model_dir, out))
    t0 = time.time()
    summary = run_training(cfg, show_progress=False)
    print(f"baseline run: {time.time() - t0:.1f} s")
    return summary, out


def checkpoints_in(out: str) -> list[str]:
    fs, inner = storage.filesystem(out)
    found = fs.glob(f"{inner}/checkpoints/train/checkpoint_*")
    return sorted(p for p in found if fs.isdir(p))  # not checkpoint_manager_snapshot.json


def problem_of(remote_dir: str, tmp_path: Path) -> str | None:
    fs, _ = storage.filesystem("s3://x")
    local = tmp_path / Path(remote_dir).name
    fs.get(remote_dir, str(local), recursive=True)
    local.mkdir(exist_ok=True)
    return checkpoint_problem(local)


@pytest.mark.slow
def test_an_upload_interrupted_midway_is_never_resumed_from(
    baseline, bucket, tiny_data, nano_model_dir, tmp_path, monkeypatch
):
    """Rank 0 dies after 2 of its checkpoint files reached S3 (epoch 1): Ray Train restarts the
    workers, they skip the partial checkpoint and resume from epoch 0's; the run ends as the
    uninterrupted one does."""
    from jobs.common import run_training
    from unlearn.config import load_config
    from unlearn.engine.config import RunConfig

    marker = tmp_path / "fault"
    monkeypatch.setenv("UNLEARN_FAULT_AFTER_EPOCH", "0")
    monkeypatch.setenv("UNLEARN_FAULT_UPLOAD_AFTER_FILES", "2")
    monkeypatch.setenv("UNLEARN_FAULT_MARKER", str(marker))
    out = f"{bucket}/interrupted-upload"
    cfg = load_config(
        RunConfig, None, run_overrides(tiny_data, nano_model_dir, out, "scaling.max_failures=1")
    )
    summary = run_training(cfg, show_progress=False)
    assert "upload interrupted before" in marker.read_text()
    # the partial upload is still there, and it is incomplete by the manifests
    problems = {Path(c).name: problem_of(c, tmp_path) for c in checkpoints_in(out)}
    partial = {k: v for k, v in problems.items() if v is not None}
    assert len(partial) == 1, problems
    assert any(s in next(iter(partial.values())) for s in ("missing", "never finished", "manifest"))
    # the workers resumed from epoch 0's checkpoint, not from the partial one
    assert resumes(out) == [{"resumed_at_step": 2, "resumed_at_epoch": 1}]
    assert [r["step"] for r in history(out) if "step" in r] == [1, 2, 3, 4, 5, 6]
    assert summary["status"] == "finished" and run_summary(out)["status"] == "finished"
    assert_same_result(summary, out, *baseline)


@pytest.mark.slow
def test_a_checkpoint_that_lost_a_file_is_skipped_on_resume(
    baseline, bucket, tiny_data, nano_model_dir, tmp_path, monkeypatch
):
    """The run dies after epoch 1's checkpoint; then a file of that checkpoint disappears from S3
    (a lost object, a partial copy): started again, the run sees it is incomplete, resumes from
    epoch 0's checkpoint and still ends as the uninterrupted run does."""
    from ray.train import TrainingFailedError

    from jobs.common import run_training
    from unlearn.config import load_config
    from unlearn.engine.config import RunConfig

    monkeypatch.setenv("UNLEARN_FAULT_AFTER_EPOCH", "1")
    monkeypatch.setenv("UNLEARN_FAULT_MARKER", str(tmp_path / "fault"))
    out = f"{bucket}/lost-object"
    cfg = load_config(
        RunConfig, None, run_overrides(tiny_data, nano_model_dir, out, "scaling.max_failures=0")
    )
    with pytest.raises(TrainingFailedError):
        run_training(cfg, show_progress=False)
    kept = checkpoints_in(out)
    assert len(kept) == 2  # epochs 0 and 1 (keep_checkpoints=2)
    fs, _ = storage.filesystem(out)
    fs.rm(f"{kept[-1]}/optimizer.pt")  # epoch 1's optimizer state is gone
    assert "optimizer.pt (rank 0) is missing" in problem_of(kept[-1], tmp_path)
    monkeypatch.delenv("UNLEARN_FAULT_AFTER_EPOCH")
    summary = run_training(cfg, show_progress=False)
    assert resumes(out) == [{"resumed_at_step": 2, "resumed_at_epoch": 1}]
    assert_same_result(summary, out, *baseline)
