"""What ASHA saves: the same sweep (same trials, same budget) with and without early stopping.

    python bench/sweep_efficiency.py [--trials 6] [--epochs 3] [--out /tmp/sweep-bench]

Builds the tiny setting (synthetic benchmark, nano Llama target and retain-only models trained
for 150 steps; or the demo's outputs with --demo runs/demo), draws ``--trials`` configurations
once from a seeded RNG (method NPO / GradDiff, lr log-uniform in [1e-5, 1e-1]: a space where the
large learning rates wreck the model), and runs them twice through `python -m jobs.sweep`, one
after the other on the same local Ray: ASHA on (grace 1 epoch, reduction factor 2) and off. Each
trial is one Ray Train run evaluated every epoch. Reports the trial-epochs each sweep spent and
the best score it reached (the evaluation's score: harmonic mean of forget quality and model
utility). Last line: one JSON object with ``epochs_saved`` (1 - ASHA's trial-epochs / the full
sweep's) and ``score_ratio`` (ASHA's best score / the full sweep's best).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def build_setting(root: Path) -> tuple[Path, Path, Path]:
    """Synthetic data and nano target / retain-only models (about 30 s)."""
    import torch

    from unlearn.data import Dataset, write_dataset
    from unlearn.data.synth import synthesize
    from unlearn.models import (
        IGNORE_INDEX,
        build_tiny_model,
        dataset_texts,
        encode_qa,
        save_model,
        train_tokenizer,
    )

    data, target, retain = root / "data", root / "target", root / "retain"
    if (retain / "config.json").exists():
        return data, target, retain
    splits, pairs = synthesize(20, 4, seed=3)
    write_dataset(data, splits, source="unlearn.synth", seed=3, pairs=pairs)
    ds = Dataset(data)
    tok = train_tokenizer(dataset_texts([r for s in ds.splits for r in ds.records(s)]), 512)
    torch.set_num_threads(1)

    def train(rows: list, seed: int) -> object:
        model = build_tiny_model(tok, "nano", max_positions=128, seed=seed)
        enc = [encode_qa(tok, r["question"], r["answer"], 96) for r in rows]
        opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
        rng = random.Random(seed)
        for _ in range(150):
            batch = rng.sample(enc, min(32, len(enc)))
            width = max(len(e["input_ids"]) for e in batch)
            ids = torch.full((len(batch), width), tok.pad_token_id)
            labels = torch.full((len(batch), width), IGNORE_INDEX)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for i, e in enumerate(batch):
                n = len(e["input_ids"])
                ids[i, :n], labels[i, :n], mask[i, :n] = (
                    torch.tensor(e["input_ids"]),
                    torch.tensor(e["labels"]),
                    1,
                )
            model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
            opt.step()
            opt.zero_grad()
        return model.eval()

    world = ds.records("world_facts")
    save_model(train(ds.records("full") + world, 0), tok, target)
    save_model(train(ds.records("retain90") + world, 1), tok, retain)
    return data, target, retain


def draw_points(n: int, seed: int) -> list[dict]:
    """The trials both sweeps run: the same configurations, drawn once."""
    rng = random.Random(seed)
    return [
        {
            "method": rng.choice(["npo", "graddiff"]),
            "lr": float(f"{10 ** rng.uniform(-5, -1):.3g}"),
        }
        for _ in range(n)
    ]


def sweep_config(
    data: Path, target: Path, retain: Path, out: Path, points: list, epochs: int, asha: bool
) -> dict:
    """One sweep's YAML: the given points, ASHA on or off."""
    return {
        "out": str(out),
        "overwrite": True,
        "run": {
            "data": {"path": str(data), "forget_split": "forget10", "max_length": 64},
            "model": {"path": str(target), "retain_model": str(retain)},
            "train": {"epochs": epochs, "batch_size": 8, "micro_batch_size": 4, "warmup_epochs": 0},
            "backend": {"kind": "torch"},
            "scaling": {"num_workers": 1, "cpus_per_worker": 0.99},
            "eval": {"batch_size": 64, "max_length": 64, "max_new_tokens": 16},
        },
        "space": {
            "method": {"choice": ["npo", "graddiff"]},
            "lr": {"loguniform": [1.0e-5, 1.0e-1]},
        },
        "search": {"algorithm": "random", "num_samples": len(points), "seed": 0, "points": points},
        "asha": {"enabled": asha, "grace_period": 1, "reduction_factor": 2},
        "guard": {"build": False},
        "export_models": False,
    }


def run_sweep(cfg: dict, path: Path) -> tuple[int, float, float]:
    """(trial-epochs, best score, wall seconds) of one sweep run as a subprocess."""
    import pandas as pd

    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    t0 = time.time()
    done = subprocess.run(
        [sys.executable, "-m", "jobs.sweep", "--config", str(path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.time() - t0
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
        raise SystemExit(f"sweep {path} failed ({done.returncode})")
    df = pd.read_parquet(Path(cfg["out"]) / "trials.parquet")
    best = df["score"].max()
    return len(df), float(best) if not math.isnan(best) else float("nan"), wall


def main() -> None:
    """Run both sweeps and print the comparison."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, default=6)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="/tmp/unlearn-sweep-bench")
    p.add_argument(
        "--demo", help="use a demo run's data / target / retain instead of building them"
    )
    args = p.parse_args()
    root = Path(args.out)
    root.mkdir(parents=True, exist_ok=True)
    if args.demo:
        demo = Path(args.demo)
        data, target, retain = demo / "data", demo / "target" / "model", demo / "retain" / "model"
    else:
        data, target, retain = build_setting(root / "setting")
    points = draw_points(args.trials, args.seed)
    out = {}
    for name, asha in (("asha", True), ("full", False)):
        cfg = sweep_config(data, target, retain, root / name, points, args.epochs, asha)
        epochs, best, wall = run_sweep(cfg, root / f"{name}.yaml")
        out[name] = {"trial_epochs": epochs, "best_score": best, "wall_s": round(wall, 1)}
        print(f"{name}: {epochs} trial-epochs, best score {best:.4f}, {wall:.0f} s", flush=True)
    result = {
        "trials": args.trials,
        "epochs": args.epochs,
        "points": points,
        **{f"{k}_{m}": v for k, d in out.items() for m, v in d.items()},
        "epochs_saved": 1 - out["asha"]["trial_epochs"] / out["full"]["trial_epochs"],
        "score_ratio": out["asha"]["best_score"] / out["full"]["best_score"],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
