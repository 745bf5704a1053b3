"""What the cluster tests share: the run config, reading a run (local or S3), and the comparison
of an interrupted run with an uninterrupted one."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.jobs.test_train_jobs import RESUME_RTOL  # one tolerance for every resume test
from unlearn import storage

WEIGHT_ATOL = 1e-4  # as tests/jobs/test_train_jobs.py: assert_same_run


def run_overrides(data: Any, model: Any, out: str, *extra: str) -> list[str]:
    """A small NPO run: 2 DDP workers, 3 epochs of 2 steps, checkpoints every epoch."""
    return [
        f"data.path={data}",
        f"model.path={model}",
        f"output.dir={out}",
        "data.max_length=64",
        "method.name=npo",
        "train.epochs=3",
        "train.lr=1e-3",
        "train.batch_size=4",
        "train.micro_batch_size=2",
        "scaling.num_workers=2",
        "backend.kind=ddp",
        *extra,
    ]


def history(out: str) -> list[dict]:
    """metrics.jsonl of a run dir (local or s3://)."""
    text = storage.read_bytes(storage.join(str(out), "metrics.jsonl")).decode()
    return [json.loads(line) for line in text.splitlines() if line]


def run_summary(out: str) -> dict:
    """run.json of a run dir."""
    return json.loads(storage.read_bytes(storage.join(str(out), "run.json")))


def weights(model_dir: str) -> dict:
    """The state dict of an exported model (local or s3://)."""
    from unlearn.models import load_model

    model, _ = load_model(str(model_dir), with_tokenizer=False)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def resumes(out: str) -> list[dict]:
    """The run's resume records (``resumed_at_step``, ``resumed_at_epoch``)."""
    return [r for r in history(out) if "resumed_at_step" in r]


def assert_same_result(summary: dict, out: str, baseline: dict, baseline_out: str) -> float:
    """Final forget and retain NLL within RESUME_RTOL (relative) of the uninterrupted run's, final
    weights within WEIGHT_ATOL; returns the largest weight difference."""
    for key in ("forget_nll", "retain_nll"):
        assert summary["loss_after"][key] == pytest.approx(
            baseline["loss_after"][key], rel=RESUME_RTOL
        ), (key, summary["loss_after"], baseline["loss_after"])
    assert summary["steps"] == baseline["steps"]
    ours = weights(storage.join(str(out), "model"))
    theirs = weights(storage.join(str(baseline_out), "model"))
    assert ours.keys() == theirs.keys()
    worst = max(float((ours[k] - theirs[k]).abs().max()) for k in ours)
    assert worst < WEIGHT_ATOL, worst
    # and it trained: the forget NLL rose (NPO), unlike a run that restarted from nothing twice
    assert summary["loss_after"]["forget_nll"] > summary["loss_before"]["forget_nll"]
    return worst
