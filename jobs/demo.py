"""The demo: synthetic benchmark -> tiny model -> target and retain-only models (Ray Train,
DeepSpeed) -> NPO+RT and gradient ascent on the forget split -> distributed evaluation -> a verdict.

    unlearn demo --out runs/demo                      # synthesizes the data
    unlearn demo --data DATASET --forget-split forget10 --retain-split retain90 --out runs/mine
    ray job submit --working-dir . -- python -m jobs.demo --out /mnt/shared/demo

Writes ``OUT/summary.json`` = {"models": {"target", "retain", "npo", "ga": <metrics.json>}, ...}
and ``OUT/report.html``; prints one table. The sizes below were tuned so the target memorizes its
facts and the whole run fits in a few minutes on a 2-core CPU (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from jobs.common import init_ray, run_training
from unlearn import storage
from unlearn.config import load_config
from unlearn.data import Dataset, write_dataset
from unlearn.engine.config import RunConfig
from unlearn.errors import DataError

# What the demo trains with. Target and retain models: long enough to memorize every fact.
# Unlearning: NPO+RT and GA get the same budget (epochs, lr, batch) so their outcomes compare.
DEMO = {
    "entities": 60,
    "facts_per_entity": 8,
    "size": "micro",
    "vocab_size": 1024,
    "max_length": 64,
    "finetune": {
        "epochs": 40,
        "lr": 3e-3,
        "batch_size": 16,
        "micro_batch_size": 8,
        "warmup_epochs": 1,
        "weight_decay": 0.0,
    },
    "unlearn": {
        "epochs": 5,
        "lr": 1e-3,
        "batch_size": 8,
        "micro_batch_size": 4,
        "warmup_epochs": 1,
    },
    "npo": {"beta": 0.1, "alpha": 1.0, "gamma": 1.0, "retain_loss": "nll"},
    "eval": {"batch_size": 64, "max_length": 64, "max_new_tokens": 32},
}


def train_overrides(section: dict[str, Any]) -> list[str]:
    """``train.key=value`` overrides from a preset section."""
    return [f"train.{k}={v}" for k, v in section.items()]


def utility_splits(ds: Dataset) -> list[str]:
    """Splits standing in for pre-training knowledge, trained into both target and retain models."""
    return [s for s in ("world_facts", "real_authors") if s in ds.splits]


def greedy_accuracy(model_dir: str, ds: Dataset, split: str, max_new_tokens: int) -> float:
    """Fraction of ``split`` whose greedy answer equals the reference answer (case/space-folded)."""
    from unlearn.eval.scoring import generate
    from unlearn.models import encode_prompt, load_model

    model, tok = load_model(model_dir)
    rows = ds.records(split)
    outs = generate(
        model,
        tok,
        [encode_prompt(tok, r["question"]) for r in rows],
        batch_size=64,
        max_new_tokens=max_new_tokens,
    )

    def norm(text: str) -> str:
        return " ".join(text.lower().split())

    return sum(norm(o) == norm(r["answer"]) for o, r in zip(outs, rows)) / len(rows)


def main(argv: list[str] | None = None) -> int:
    """Run the whole demo; returns the exit code."""
    p = argparse.ArgumentParser(
        prog="unlearn demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--data", help="a dataset in our format (default: synthesize one)")
    p.add_argument("--forget-split", default="forget10")
    p.add_argument("--retain-split", help="default: the forget split's pair in dataset.json")
    p.add_argument("--model", help="a base model to fine-tune (default: build a tiny Llama)")
    p.add_argument("--workers", type=int, default=2, help="Ray Train / eval workers")
    p.add_argument("--zero-stage", type=int, default=2, choices=[0, 1, 2, 3])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--address", help="Ray cluster address (default: a local Ray)")
    p.add_argument("--overwrite", action="store_true", help="start over in an existing --out")
    args = p.parse_args(argv)
    t0 = time.time()
    out = os.path.abspath(args.out) if not storage.is_remote(args.out) else args.out
    if args.overwrite and storage.exists(out):
        fs, inner = storage.filesystem(out)
        fs.rm(inner, recursive=True)

    # 1. data
    data = args.data or storage.join(out, "data")
    if args.data is None and not storage.exists(storage.join(data, "dataset.json")):
        from unlearn.data.synth import synthesize

        splits, pairs = synthesize(DEMO["entities"], DEMO["facts_per_entity"], args.seed)
        write_dataset(
            data,
            splits,
            source="unlearn.synth",
            seed=args.seed,
            params={k: DEMO[k] for k in ("entities", "facts_per_entity")},
            pairs=pairs,
        )
    ds = Dataset(data)
    forget = args.forget_split
    retain = args.retain_split or (ds.info.pairs.get(forget) or {}).get("retain")
    if retain is None:
        raise DataError(
            f"dataset {data} records no retain split for {forget!r}: pass --retain-split"
        )
    ds.pair(forget, retain)
    extra = utility_splits(ds)
    full = ["full"] if "full" in ds.splits else [forget, retain]
    print(
        f"[1/5] data: {data}  forget={forget} ({ds.info.splits[forget]['rows']} rows)  retain={retain}  utility={extra}"
    )

    # 2. base model
    base = args.model or storage.join(out, "base")
    if args.model is None and not storage.exists(storage.join(base, "config.json")):
        from unlearn.models import build_tiny_model, dataset_texts, save_model, train_tokenizer

        texts = dataset_texts(r for s in ds.splits for r in ds.records(s))
        tok = train_tokenizer(texts, DEMO["vocab_size"])
        save_model(
            build_tiny_model(tok, DEMO["size"], max_positions=128, seed=args.seed), tok, base
        )
    print(f"[2/5] base model: {base}")

    init_ray(args.address)
    common = [
        f"data.path={data}",
        f"data.max_length={DEMO['max_length']}",
        f"scaling.num_workers={args.workers}",
        "backend.kind=deepspeed",
        f"backend.zero_stage={args.zero_stage}",
        f"train.seed={args.seed}",
    ]

    def run(name: str, model: str, overrides: list[str]) -> dict[str, Any]:
        cfg = load_config(
            RunConfig,
            None,
            [*common, f"model.path={model}", f"output.dir={storage.join(out, name)}", *overrides],
        )
        run_json = storage.join(out, name, "run.json")
        if storage.exists(run_json):  # finished earlier (a re-run of the demo reuses it)
            return json.loads(storage.read_bytes(run_json))
        started = time.time()
        summary = run_training(cfg)
        print(
            f"      {name}: {summary['steps']} steps in {time.time() - started:.0f}s, loss before {fmt(summary['loss_before'])} after {fmt(summary['loss_after'])}"
        )
        return summary

    # 3. target and retain-only models
    ft = train_overrides(DEMO["finetune"])
    runs = {
        "target": run(
            "target",
            base,
            ["method.name=finetune", f"data.train_splits=[{', '.join(full + extra)}]", *ft],
        )
    }
    runs["retain"] = run(
        "retain",
        base,
        ["method.name=finetune", f"data.train_splits=[{', '.join([retain, *extra])}]", *ft],
    )
    target_model = storage.join(out, "target", "model")
    acc = greedy_accuracy(target_model, ds, forget, DEMO["eval"]["max_new_tokens"])
    print(
        f"[3/5] target and retain-only models trained; target's forget-set greedy-answer accuracy: {acc:.1%}"
    )

    # 4. unlearning: NPO+RT, and gradient ascent with the same budget
    un = [
        f"data.forget_split={forget}",
        f"data.retain_split={retain}",
        *train_overrides(DEMO["unlearn"]),
    ]
    # NPO also evaluates after every epoch (all workers), for the report's per-epoch curves
    evaluation = [
        f"model.retain_model={storage.join(out, 'retain', 'model')}",
        "eval.every_n_epochs=1",
        *[f"eval.{k}={v}" for k, v in DEMO["eval"].items()],
    ]
    runs["npo"] = run(
        "npo",
        target_model,
        ["method.name=npo", *[f"method.{k}={v}" for k, v in DEMO["npo"].items()], *un, *evaluation],
    )
    runs["ga"] = run("ga", target_model, ["method.name=ga", *un])
    print("[4/5] unlearned with NPO+RT and gradient ascent")

    # 5. evaluation: every model against the retain-only model, across Ray workers
    from jobs.eval import run_eval
    from unlearn.eval import EvalConfig, write_report

    ecfg = EvalConfig(forget_split=forget, retain_split=retain, **DEMO["eval"])
    models: dict[str, Any] = {}
    for name in ("target", "retain", "npo", "ga"):
        models[name] = run_eval(
            storage.join(out, name, "model"), data, storage.join(out, "eval", name),
            retain_model=storage.join(out, "retain", "model"), cfg=ecfg, workers=args.workers,
            address=args.address, cache_dir=storage.join(out, "eval", "cache"), name=name, overwrite=True,
        )  # fmt: skip
    summary = {
        "models": models,
        "runs": runs,
        "target_forget_greedy_accuracy": acc,
        "dataset": {"path": data, "hash": ds.hash, "forget_split": forget, "retain_split": retain},
        "wall_time_s": time.time() - t0,
    }
    storage.write_bytes(storage.join(out, "summary.json"), json.dumps(summary, indent=2).encode())
    write_report(
        storage.join(out, "report.html"),
        models,
        history=npo_curve(out, models["target"]),
        title="unlearn demo: NPO+RT vs gradient ascent",
    )
    print("[5/5] evaluated\n")
    print(verdict_table(models, forget))
    print(
        f"\nreport: {storage.join(out, 'report.html')}\nsummary: {storage.join(out, 'summary.json')}  ({time.time() - t0:.0f}s)"
    )
    return 0


def npo_curve(out: str, target: dict[str, Any]) -> list[dict[str, Any]]:
    """Forget quality and model utility per NPO epoch (epoch 0 = the target, before unlearning)."""
    text = storage.read_bytes(storage.join(out, "npo", "metrics.jsonl")).decode()
    rows = [json.loads(line) for line in text.splitlines() if line]
    curve = [
        {
            "epoch": 0,
            "forget_quality": target.get("forget_quality"),
            "model_utility": target.get("model_utility"),
        }
    ]
    curve += [
        {
            "epoch": r["eval_epoch"] + 1,
            "forget_quality": r["forget_quality"],
            "model_utility": r["model_utility"],
        }
        for r in rows
        if "eval_epoch" in r
    ]
    return curve


def fmt(losses: dict[str, float]) -> str:
    """``forget 1.23 / retain 4.56``."""
    return " / ".join(f"{k.removesuffix('_nll')} {v:.3f}" for k, v in losses.items())


def verdict_table(models: dict[str, dict[str, Any]], forget: str) -> str:
    """One table: forget ROUGE, forget quality, model utility, privleak per model."""

    def num(v: Any, spec: str) -> str:
        return "n/a" if v is None else format(v, spec)

    lines = [
        f"{'model':<8}{'forget ROUGE-L':>16}{'forget quality':>16}{'model utility':>15}{'privleak':>10}"
    ]
    for name, m in models.items():
        rouge = (m.get("splits", {}).get(forget) or {}).get("rouge_l_recall")
        lines.append(
            f"{name:<8}{num(rouge, '.3f'):>16}{num(m.get('forget_quality'), '.3g'):>16}{num(m.get('model_utility'), '.3f'):>15}{num(m.get('privleak'), '.1f'):>10}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
