"""The memory planner: its JSON interface, verdicts for the shipped 1B / 8B / 7B configs, levers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli import main as cli_main
from unlearn.config import load_config
from unlearn.engine.config import RunConfig
from unlearn.engine.planner import PARTS, per_gpu_bytes

ROOT = Path(__file__).resolve().parents[3]


def run_plan(capsys, *argv: str) -> dict:
    assert cli_main(["plan", *argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_plan_json_has_the_interface_keys_and_a_verdict(capsys):
    out = run_plan(
        capsys, "--config", str(ROOT / "examples/plan_llama-3.1-8b.yaml"),
        "--nodes", "1", "--gpus-per-node", "8", "--gpu-memory-gb", "80",
    )  # fmt: skip
    assert set(out["per_gpu_bytes"]) == {*PARTS, "total"}
    assert out["per_gpu_bytes"]["total"] == sum(out["per_gpu_bytes"][k] for k in PARTS)
    assert out["fits"] is True and out["world_size"] == 8
    assert out["parameters"] == 8_030_261_248  # Llama-3.1-8B's published count
    # 16 GB of bf16 weights over 8 ranks, plus two gathered decoder layers
    assert 2.0e9 < out["per_gpu_bytes"]["parameters"] < 2.9e9
    # on 32 GB GPUs it does not fit, and a lever that makes it fit is named first
    small = run_plan(
        capsys, "--config", str(ROOT / "examples/plan_llama-3.1-8b.yaml"),
        "--gpus-per-node", "8", "--gpu-memory-gb", "32",
    )  # fmt: skip
    assert small["fits"] is False and small["first_lever"]
    first = next(x for x in small["levers"] if x["lever"] == small["first_lever"])
    assert first["fits"] and first["total"] < small["per_gpu_bytes"]["total"]


@pytest.mark.parametrize("name", ["llama-3.2-1b", "llama-3.1-8b", "qwen2.5-7b"])
def test_levers_shrink_the_parts_they_target(name):
    cfg = load_config(RunConfig, ROOT / f"examples/plan_{name}.yaml")
    base = per_gpu_bytes(cfg, 8)
    ckpt = per_gpu_bytes(load_config(RunConfig, ROOT / f"examples/plan_{name}.yaml",
                                     ["train.gradient_checkpointing=true"]), 8)  # fmt: skip
    assert ckpt["activations"] < 0.5 * base["activations"]
    lora = per_gpu_bytes(load_config(RunConfig, ROOT / f"examples/plan_{name}.yaml",
                                     ["model.lora.r=16"]), 8)  # fmt: skip
    assert lora["optimizer"] < 0.05 * base["optimizer"]
    zero2 = per_gpu_bytes(load_config(RunConfig, ROOT / f"examples/plan_{name}.yaml",
                                      ["backend.zero_stage=2"]), 8)  # fmt: skip
    assert zero2["parameters"] > 4 * base["parameters"]  # ZeRO-2 replicates the weights
    kl = per_gpu_bytes(load_config(RunConfig, ROOT / f"examples/plan_{name}.yaml",
                                   ["method.retain_loss=kl"]), 8)  # fmt: skip
    assert kl["reference"] > 0.8 * base["parameters"]  # an online reference: a second copy


def test_plan_refuses_a_model_without_config_json(tmp_path, capsys):
    code = cli_main([
        "plan", "--config", str(ROOT / "examples/plan_llama-3.2-1b.yaml"),
        f"model.path={tmp_path}",
    ])  # fmt: skip
    assert code == 2
    assert "config.json" in capsys.readouterr().err
