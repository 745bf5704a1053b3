"""Ray Train jobs for real: 2 workers, DeepSpeed ZeRO-3 sharding, checkpoints, resume, equivalence."""

from __future__ import annotations

import json

import pytest
import torch

from unlearn.config import load_config
from unlearn.data import Dataset
from unlearn.engine import run_dir
from unlearn.engine.config import RunConfig
from unlearn.engine.loop import data_hashes, train
from unlearn.engine.session import LocalSession
from unlearn.errors import OutputExistsError

pytestmark = pytest.mark.slow


def cfg_for(data, model, out, *overrides):
    base = [
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
        "backend.kind=deepspeed",
        "backend.zero_stage=3",
        "backend.param_persistence_threshold=0",  # really shard every parameter
    ]
    return load_config(RunConfig, None, base + list(overrides))


def history(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


# A resumed run restores weights, optimizer, LR schedule and the (seed, epoch) data order from its
# checkpoint, so it ends where an uninterrupted run of the same config ends, up to the float noise
# of reductions in another order (measured ~1e-6 relative). 1e-4 leaves room for other BLAS builds.
RESUME_RTOL = 1e-4


def weights(model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_run(resumed, out, baseline, baseline_dir):
    """Final losses within RESUME_RTOL of the uninterrupted run's; final weights allclose."""
    import torch

    for key in ("forget_nll", "retain_nll"):
        assert resumed["loss_after"][key] == pytest.approx(
            baseline["loss_after"][key], rel=RESUME_RTOL
        ), (key, resumed["loss_after"], baseline["loss_after"])
    ours, theirs = weights(out / "model"), weights(baseline_dir / "model")
    assert ours.keys() == theirs.keys()
    worst = max(float((ours[k] - theirs[k]).abs().max()) for k in ours)
    assert worst < 1e-4, worst
    base = weights(baseline["base_model_dir"])
    assert any(not torch.equal(ours[k], base[k]) for k in ours)  # it trained at all


@pytest.fixture(scope="module")
def uninterrupted(ray_local, tiny_data, nano_model_dir, tmp_path_factory):
    """The reference runs: DDP x2 and ZeRO-3 x2, never interrupted (same seed as the tests)."""
    from jobs.common import run_training

    root = tmp_path_factory.mktemp("uninterrupted")
    out = {}
    for name, extra in (("ddp", ["backend.kind=ddp"]), ("zero3", [])):
        summary = run_training(
            cfg_for(tiny_data, nano_model_dir, root / name, *extra), show_progress=False
        )
        out[name] = ({**summary, "base_model_dir": nano_model_dir}, root / name)
    return out


def test_zero3_two_workers_survive_a_worker_failure(
    uninterrupted, tiny_data, nano_model_dir, tmp_path, monkeypatch
):
    from jobs.common import run_training

    marker = tmp_path / "fault"
    monkeypatch.setenv("UNLEARN_FAULT_AFTER_EPOCH", "0")
    monkeypatch.setenv("UNLEARN_FAULT_MARKER", str(marker))
    out = tmp_path / "run"
    evaluation = [
        f"model.retain_model={nano_model_dir}",
        "eval.every_n_epochs=1",
        "eval.max_new_tokens=4",
    ]
    cfg = cfg_for(tiny_data, nano_model_dir, out, "scaling.max_failures=1", *evaluation)
    summary = run_training(cfg, show_progress=False)
    assert marker.exists()  # the last worker really died after epoch 0's checkpoint
    rows = history(out)
    # 8 forget rows / batch 4 = 2 steps per epoch; resumed after epoch 0, steps continued
    assert [r for r in rows if "resumed_at_step" in r] == [
        {"resumed_at_step": 2, "resumed_at_epoch": 1}
    ]
    assert [r["step"] for r in rows if "step" in r] == [1, 2, 3, 4, 5, 6]
    assert summary["status"] == "finished" and summary["steps"] == 6 and summary["zero_stage"] == 3
    # synced evaluation under ZeRO-3 on both workers after every epoch (epoch 1's first try was lost)
    evals = [r for r in rows if "eval_epoch" in r]
    assert [r["eval_epoch"] for r in evals] == [0, 1, 2]
    assert all(0 <= r["forget_quality"] <= 1 and 0 <= r["model_utility"] <= 1 for r in evals)
    assert summary["best"]["score"] == max(r["score"] for r in evals)
    assert (out / "best_model" / "model.safetensors").exists()
    assert (out / "reference_logprobs.safetensors").exists()
    assert list((out / "checkpoints" / "train").glob("checkpoint_*"))
    # consolidated from ZeRO-3 shards, and the same model an uninterrupted run ends with
    assert_same_run(summary, out, *uninterrupted["zero3"])


def test_zero3_two_workers_stop_together_at_retain_equivalent(
    ray_local, tiny_data, nano_model_dir, tmp_path
):
    """train.stop_at under ZeRO-3 on 2 workers: both ranks read the same merged privleak and stop
    after the same epoch (a rank that went on alone would hang the next collective)."""
    from jobs.common import run_training

    out = tmp_path / "run"
    cfg = cfg_for(
        tiny_data, nano_model_dir, out, f"model.retain_model={nano_model_dir}",
        "eval.every_n_epochs=1", "eval.max_new_tokens=4", "train.stop_at=retain_equivalent",
        "train.lr=1e-4",
    )  # fmt: skip
    summary = run_training(cfg, show_progress=False)
    evals = [r for r in history(out) if "eval_epoch" in r]
    assert [r["eval_epoch"] for r in evals] == [0] and abs(evals[0]["privleak"]) <= 25
    assert summary["status"] == "finished" and summary["steps"] == 2
    assert summary["stopped"] == {**evals[0]["stopped"]} and summary["stopped"]["epoch"] == 0
    assert (out / "model" / "model.safetensors").exists()


def test_killed_run_resumes_when_started_again(
    uninterrupted, tiny_data, nano_model_dir, tmp_path, monkeypatch
):
    from ray.train import TrainingFailedError

    from jobs.common import run_training

    out = tmp_path / "run"
    monkeypatch.setenv("UNLEARN_FAULT_AFTER_EPOCH", "1")
    monkeypatch.setenv("UNLEARN_FAULT_MARKER", str(tmp_path / "fault"))
    cfg = cfg_for(tiny_data, nano_model_dir, out, "scaling.max_failures=0", "backend.kind=ddp")
    with pytest.raises(TrainingFailedError):
        run_training(cfg, show_progress=False)
    failed = json.loads((out / "run.json").read_text())  # recorded as failed, with the reason
    assert failed["status"] == "failed" and failed["reason"].startswith("worker"), failed
    assert not (out / "model").exists()  # nothing looks finished
    monkeypatch.delenv("UNLEARN_FAULT_AFTER_EPOCH")
    summary = run_training(cfg, show_progress=False)
    rows = history(out)
    assert [r for r in rows if "resumed_at_step" in r] == [
        {"resumed_at_step": 4, "resumed_at_epoch": 2}
    ]
    assert [r["step"] for r in rows if "step" in r] == [1, 2, 3, 4, 5, 6]
    assert summary["steps"] == 6
    assert_same_run(summary, out, *uninterrupted["ddp"])


def test_backends_agree(uninterrupted, tiny_data, nano_model_dir, tmp_path):
    """Single process, DDP x2 and ZeRO-3 x2 end within 1e-4 relative of each other (see docs)."""
    single_cfg = cfg_for(
        tiny_data,
        nano_model_dir,
        tmp_path / "single",
        "backend.kind=torch",
        "scaling.num_workers=1",
    )
    run_dir.prepare(single_cfg, data_hashes(single_cfg, Dataset(tiny_data)))
    results = {"single": train(single_cfg, LocalSession(tmp_path / "ckpt"))["loss_after"]}
    for name in ("ddp", "zero3"):
        results[name] = uninterrupted[name][0]["loss_after"]
    for name in ("ddp", "zero3"):
        for key in ("forget_nll", "retain_nll"):
            assert results[name][key] == pytest.approx(results["single"][key], rel=1e-4), (
                name,
                key,
                results,
            )
    assert results["single"]["forget_nll"] != pytest.approx(
        results["single"]["retain_nll"], rel=1e-3
    )


def test_run_reads_and_writes_s3(ray_local, tiny_data, nano_model_dir, s3_bucket):
    """Dataset, base model, checkpoints and the run directory all on S3 (moto on 127.0.0.1)."""
    from jobs.common import run_training
    from unlearn import storage
    from unlearn.data import write_dataset
    from unlearn.engine import reference
    from unlearn.engine.loop import build_streams
    from unlearn.methods import build_method
    from unlearn.models import load_model, save_model

    ds = Dataset(tiny_data)
    data = f"{s3_bucket}/data"
    write_dataset(data, {s: ds.read(s) for s in ds.splits}, source="copy", pairs=ds.info.pairs)
    model, tok = load_model(nano_model_dir)
    save_model(model, tok, f"{s3_bucket}/base")
    out = f"{s3_bucket}/runs/npo"
    cfg = cfg_for(data, f"{s3_bucket}/base", out, "backend.kind=ddp", "train.epochs=2")
    summary = run_training(cfg, show_progress=False)
    assert summary["status"] == "finished" and summary["model_dir"] == f"{out}/model"
    fs, inner = storage.filesystem(out)
    names = {p.rsplit("/", 1)[-1] for p in fs.ls(inner)}
    assert {
        "config.yaml",
        "metrics.jsonl",
        "reference_logprobs.safetensors",
        "run.json",
        "model",
        "checkpoints",
    } <= names
    assert fs.glob(f"{inner}/checkpoints/train/checkpoint_*")
    trained, _ = load_model(f"{out}/model")  # back through S3: the weights the run ended with
    streams = build_streams(cfg, build_method(cfg.method).streams, ds, tok)
    stats = reference.stream_logprobs(
        trained, streams["forget"], batch_size=4, rank=0, world_size=1,
        pad_id=tok.pad_token_id, device=torch.device("cpu"),
    )  # fmt: skip
    assert reference.mean_nll(stats) == pytest.approx(summary["loss_after"]["forget_nll"], rel=1e-4)


def test_overwrite_replaces_a_finished_run_with_the_new_one(
    uninterrupted, tiny_data, nano_model_dir, tmp_path
):
    """--overwrite builds the new run beside the old one (published once it has finished); the
    run's files then name the final directory and nothing is left beside it."""
    import os
    import shutil

    from jobs.common import run_training

    out = tmp_path / "run"
    shutil.copytree(uninterrupted["ddp"][1], out)
    old_model = (out / "model" / "model.safetensors").read_bytes()
    cfg = cfg_for(tiny_data, nano_model_dir, out, "backend.kind=ddp", "train.epochs=1")
    with pytest.raises(OutputExistsError, match="holds a finished run"):
        run_training(cfg, show_progress=False)
    overwrite = cfg_for(
        tiny_data,
        nano_model_dir,
        out,
        "backend.kind=ddp",
        "train.epochs=1",
        "output.overwrite=true",
    )
    summary = run_training(overwrite, show_progress=False)
    assert summary["status"] == "finished" and summary["steps"] == 2
    assert summary["model_dir"] == str(out / "model")
    assert (out / "model" / "model.safetensors").read_bytes() != old_model
    assert f"dir: {out}" in (out / "config.yaml").read_text()
    assert [n for n in os.listdir(tmp_path) if ".unlearn-" in n] == []
