"""Slow runs for open-unlearning parity: the token-mean NLL gives the same run on one process,
DDP x2 and ZeRO-3 x2; each new method runs through `unlearn run`; the demo runs to its verdict on
a TOFU-shaped import (with holdout, so MIA and privleak are computed)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from cli import main
from unlearn.config import load_config
from unlearn.data import Dataset
from unlearn.engine import run_dir
from unlearn.engine.config import RunConfig
from unlearn.engine.loop import data_hashes, train
from unlearn.engine.session import LocalSession

pytestmark = pytest.mark.slow
TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent


def cfg_for(data, model, out, *overrides):
    base = [
        f"data.path={data}", f"model.path={model}", f"output.dir={out}", "data.max_length=64",
        "method.name=graddiff", "method.nll_reduction=token", "train.epochs=2", "train.lr=1e-3",
        "train.batch_size=4", "train.micro_batch_size=2", "scaling.num_workers=2",
        "backend.kind=deepspeed", "backend.zero_stage=3", "backend.param_persistence_threshold=0",
    ]  # fmt: skip
    return load_config(RunConfig, None, base + list(overrides))


def local_run(cfg, tmp_path, name):
    run_dir.prepare(cfg, data_hashes(cfg, Dataset(cfg.data.path)))
    return train(cfg, LocalSession(tmp_path / f"ckpt-{name}"))["loss_after"]


def test_token_mean_backends_agree(ray_local, tiny_data, nano_model_dir, tmp_path):
    """One process (2 micro-batches accumulated) and DDP x2 (1 micro-batch each, token counts
    all-reduced per step) end within 1e-4 relative of each other under nll_reduction: token, as
    the per-example form does (tests/jobs/test_train_jobs.py). ZeRO-3 shares the all-reduced
    counts with DDP (the engine's reduction does not depend on the backend), so one distributed
    backend keeps this test's cost down."""
    from jobs.common import run_training

    one = ["backend.kind=torch", "scaling.num_workers=1"]
    results = {"single": local_run(cfg_for(tiny_data, nano_model_dir, tmp_path / "s", *one),
                                   tmp_path, "s")}  # fmt: skip
    for name, extra in (("ddp", ["backend.kind=ddp"]),):
        summary = run_training(
            cfg_for(tiny_data, nano_model_dir, tmp_path / name, *extra), show_progress=False
        )
        results[name] = summary["loss_after"]
    for name in ("ddp",):
        for key in ("forget_nll", "retain_nll"):
            assert results[name][key] == pytest.approx(results["single"][key], rel=1e-4), (
                name, key, results,
            )  # fmt: skip
    # and the token form is a different loss from the per-example one (answers differ in length)
    example = local_run(
        cfg_for(tiny_data, nano_model_dir, tmp_path / "e", *one, "method.nll_reduction=example"),
        tmp_path, "e",
    )  # fmt: skip
    assert example["forget_nll"] != pytest.approx(results["single"]["forget_nll"], rel=1e-5)


# Every method trains through the engine in tests/unlearn/engine/test_method_matrix.py; the
# command end to end runs for the two that exercise the most: UNDIAL (a reference model on the
# workers) and PDU (method state saved in checkpoints), to keep the suite's cost bounded.
@pytest.mark.parametrize("name", ["undial", "pdu"])
def test_unlearn_run_each_new_method(name, ray_local, tiny_data, nano_model_dir, tmp_path):
    """`unlearn run` on examples/npo_tiny.yaml with `method: {name: NAME}` (the tiny setting)."""
    out = tmp_path / name
    # the tiny setting (ZeRO-3 x 2 workers) with the method's own section at its defaults
    preset = yaml.safe_load((ROOT / "examples" / "npo_tiny.yaml").read_text())
    preset["method"] = {"name": name}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(preset))
    args = [
        "run", "--config", str(tmp_path / "run.yaml"), f"data.path={tiny_data}",
        f"model.path={nano_model_dir}", f"output.dir={out}",
        "train.epochs=1", "train.batch_size=4", "train.micro_batch_size=2",
    ]  # fmt: skip
    assert main(args) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "finished" and run["method"] == name and run["steps"] == 2
    assert run["zero_stage"] == 3 and run["num_workers"] == 2
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert all("forget_loss" in r for r in rows if "step" in r)
    cfg_yaml = (out / "config.yaml").read_text()
    assert f"name: {name}" in cfg_yaml  # the resolved config records the method's parameters


def test_demo_on_a_tofu_shaped_import(ray_local, tmp_path, capsys):
    """`unlearn demo --data DIR --forget-split forget10 --retain-split retain90` on the
    hand-written TOFU-shaped release (20 authors x 6 rows, holdout files): in-training and final
    evaluation use retain_perturbed, as `unlearn eval` does, and MIA / privleak use holdout10."""
    src = tmp_path / "tofu"
    shutil.copytree(TESTS / "unlearn" / "guard" / "heldout" / "tofu_shaped", src)
    for f in (TESTS / "unlearn" / "data" / "tofu_holdout").glob("holdout*.json"):
        shutil.copy(f, src / f.name)
    data = tmp_path / "data"
    assert main(["data", "import", "--format", "tofu", str(src), "--out", str(data)]) == 0
    out = tmp_path / "demo"
    # the demo's preset cut to one method (NPO, with its in-training curves) and small budgets
    preset = yaml.safe_load((ROOT / "examples" / "demo.yaml").read_text())
    preset["methods"] = {"npo": preset["methods"]["npo"]}
    (tmp_path / "demo.yaml").write_text(yaml.safe_dump(preset))
    argv = [
        "demo", "--config", str(tmp_path / "demo.yaml"), "--data", str(data),
        "--forget-split", "forget10", "--retain-split", "retain90", "--out", str(out),
        "--workers", "1", "finetune.epochs=4", "unlearn.epochs=2", "tiny_model.size=nano",
        "max_length=128", "eval.max_length=128", "eval.max_new_tokens=8",
        "tiny_model.max_positions=160",
    ]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "forget ROUGE-L" in printed and "privleak" in printed  # the verdict table
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["models"]) == {"target", "retain", "npo"}
    for m in summary["models"].values():
        assert m["roles"]["retain_perturbed"] == "retain" and m["roles"]["holdout10"] == "holdout"
        assert m["privleak"] is not None and m["mia"]
        assert m["forget_quality"] is not None
    npo = [json.loads(x) for x in (out / "npo" / "metrics.jsonl").read_text().splitlines()]
    assert [r["eval_epoch"] for r in npo if "eval_epoch" in r] == [0, 1]  # in-training curves
    assert (out / "report.html").exists()
