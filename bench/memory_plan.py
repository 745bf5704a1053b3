"""The memory planner's estimate against the measured peak, on CPU.

For each setting (ZeRO-0/2/3 under DeepSpeed, each with and without gradient checkpointing, and
LoRA) one NPO+RT run of a 12M-parameter Llama (rows of exactly ``max_length`` tokens) trains in a fresh process (one rank, so its RSS is
its own); run.json's ``memory`` records the resident peak above the baseline taken just before
the weights were built (``unlearn.engine.memory.Probe``). The planner
(``unlearn.engine.planner.per_gpu_bytes``, world size 1) predicts the same quantity from the
config and the model's config.json alone. Its formulas are derived from the saved tensors of each
op (the planner's docstring), not fitted to these runs.

    PYTHONPATH=$PWD .venv/bin/python bench/memory_plan.py [--max-length 256]

Last line: one JSON object with each setting's estimate, measured peak, relative error and
``max_rel_error``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SETTINGS = {
    "zero0": ["backend.zero_stage=0"],
    "zero0_ckpt": ["backend.zero_stage=0", "train.gradient_checkpointing=true"],
    "zero2": ["backend.zero_stage=2"],
    "zero2_ckpt": ["backend.zero_stage=2", "train.gradient_checkpointing=true"],
    "zero3": ["backend.zero_stage=3"],
    "zero3_ckpt": ["backend.zero_stage=3", "train.gradient_checkpointing=true"],
    "zero2_lora": ["backend.zero_stage=2", "model.lora.r=16"],
    "zero3_lora_ckpt": [
        "backend.zero_stage=3",
        "model.lora.r=16",
        "train.gradient_checkpointing=true",
    ],
}


def overrides(root: Path, name: str, max_length: int) -> list[str]:
    """The run's config: NPO+RT, one rank, DeepSpeed fp32 on CPU."""
    return [
        f"data.path={root / 'data'}",
        f"model.path={root / 'model'}",
        f"output.dir={root / 'runs' / name}",
        f"data.max_length={max_length}",
        "data.forget_split=forget10",
        "data.retain_split=retain90",
        "method.name=npo",
        "train.epochs=1",
        "train.batch_size=8",
        "train.micro_batch_size=4",
        "backend.kind=deepspeed",
        *SETTINGS[name],
    ]


def child(root: Path, name: str, max_length: int) -> None:
    """One run in this process; prints the estimate and the measured peak as JSON."""
    from unlearn.config import load_config
    from unlearn.data import Dataset
    from unlearn.engine import run_dir
    from unlearn.engine.config import RunConfig
    from unlearn.engine.distributed import init_single_process
    from unlearn.engine.loop import data_hashes, train
    from unlearn.engine.planner import per_gpu_bytes
    from unlearn.engine.session import LocalSession

    cfg = load_config(RunConfig, None, overrides(root, name, max_length))
    estimate = per_gpu_bytes(cfg, 1)
    init_single_process()
    run_dir.prepare(cfg, data_hashes(cfg, Dataset(cfg.data.path)))
    summary = train(cfg, LocalSession(root / "ckpt" / name))
    measured = summary["memory"]["ranks"][0]["run"]["peak_rss_above_baseline"]
    print(json.dumps({"estimate": estimate, "measured": measured}))


def prepare(root: Path) -> int:
    """A synthetic dataset and a 12M-parameter Llama ("small") with its tokenizer."""
    from unlearn.data import write_dataset
    from unlearn.data.synth import synthesize
    from unlearn.models import build_tiny_model, dataset_texts, save_model, train_tokenizer

    splits, pairs = synthesize(20, 4, seed=11)
    tok = train_tokenizer(dataset_texts([r for rows in splits.values() for r in rows]), 2048)
    # long answers: every row is cut at data.max_length, so the planner's tokens per micro-batch
    # are the tokens really run (new dicts: splits share their row objects)
    splits = {
        name: [{**r, "answer": " ".join([r["answer"]] * 40)} for r in rows]
        for name, rows in splits.items()
    }
    write_dataset(root / "data", splits, source="unlearn.synth", seed=11, pairs=pairs)
    model = build_tiny_model(tok, "small", max_positions=512)
    save_model(model, tok, root / "model")
    return sum(p.numel() for p in model.parameters())


def main() -> None:
    """Run every setting in its own process, side by side, and compare."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-length", type=int, default=192)
    parser.add_argument("--child")
    parser.add_argument("--root")
    args = parser.parse_args()
    if args.child:
        child(Path(args.root), args.child, args.max_length)
        return
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        n_params = prepare(root)
        for name in SETTINGS:
            proc = subprocess.run(
                [sys.executable, __file__, "--child", name, "--root", str(root),
                 "--max-length", str(args.max_length)],
                capture_output=True, text=True, env=dict(os.environ), check=False,
            )  # fmt: skip
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"setting {name} failed")
            out = json.loads(proc.stdout.strip().splitlines()[-1])
            est, measured = out["estimate"]["total"], out["measured"]
            rel = (est - measured) / measured
            rows[name] = {
                "estimate_mb": round(est / 1e6, 1),
                "measured_peak_mb": round(measured / 1e6, 1),
                "rel_error": round(rel, 3),
                "parts_mb": {k: round(v / 1e6, 1) for k, v in out["estimate"].items()},
            }
            print(
                f"{name:<18} estimate {est / 1e6:8.1f} MB   measured {measured / 1e6:8.1f} MB"
                f"   error {rel:+.1%}",
                flush=True,
            )
    print(
        json.dumps(
            {
                "benchmark": "memory_plan",
                "model_parameters": n_params,
                "max_length": args.max_length,
                "micro_batch_size": 4,
                "settings": rows,
                "max_rel_error": round(max(abs(r["rel_error"]) for r in rows.values()), 3),
            }
        )
    )


if __name__ == "__main__":
    main()
