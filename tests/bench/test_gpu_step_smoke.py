"""bench/gpu_step.py --smoke: the GPU benchmark's code path runs on CPU and keeps its JSON interface."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow  # four fresh processes with DeepSpeed: ~30-60 s on 2 cores


def test_gpu_step_smoke_runs_every_configuration(tmp_path):
    env = {**os.environ, "DS_ACCELERATOR": "cpu"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_step.py"), "--smoke", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])  # the interface: last line is JSON
    assert result["bench"] == "gpu_step" and result["smoke"] is True
    for key in ("tokens_per_s", "mfu", "matmul_tflops", "best_config", "configs", "model"):
        assert key in result, key
    assert set(result["configs"]) == {
        "zero2-cached",
        "zero2-online",
        "zero3-cached",
        "zero3-online",
    }
    for name, r in result["configs"].items():
        assert "error" not in r, (name, r)
        assert r["finite"] and r["tokens_per_s"] > 0 and 0 < r["mfu"] < 1
        for key in ("step_s", "mfu_vs_matmul", "mfu_with_lm_head", "hfu", "peak_memory_gb"):
            assert key in r, (name, key)
        assert r["params"] == result["model"]["params"]["total"]  # the FLOP count's model
    assert result["configs"]["zero2-cached"]["cache_pass_tokens"] > 0
    assert (
        result["configs"]["zero2-online"]["hfu"]
        > result["configs"]["zero2-online"]["mfu_with_lm_head"]
    )
    saved = json.loads((tmp_path / "gpu_step.json").read_text())
    assert saved["best_config"] == result["best_config"]
