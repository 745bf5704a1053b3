"""Batched evaluation pass vs a per-example loop: same model, same split, one run.

The batched pass is what ``unlearn eval`` runs (``unlearn.eval.evaluate_records``: every
teacher-forced sequence of the split -- answer, paraphrased answer, perturbed answers -- in
length-sorted right-padded batches, then every greedy generation -- QA answers and VerbMem
continuations -- in left-padded batches). The loop evaluates the same rows one at a time with
batch size 1, as a naive evaluator does. Both compute every forget-split metric (probability,
truth ratio, ROUGE, KnowMem, VerbMem, extraction strength, exact memorization, MIA scores); the
script checks that they agree and reports the largest difference.

Model: a randomly initialized ``tiny`` Llama (``unlearn model tiny``'s default) with a tokenizer
trained on the synthetic benchmark; untrained, it never emits EOS early, so every generation runs
the full ``--max-new-tokens`` in both modes (the worst case). Runs alternate (batched, loop,
batched, loop, ...); medians are reported. ``speedup`` is the ratio of median process CPU times
(``time.process_time``; with one torch thread that is the work done, unaffected by other jobs on
this shared 2-core machine, where wall times swing 2-3x between runs); ``speedup_wall`` is the
wall-clock ratio.

Usage: .venv/bin/python bench/eval_throughput.py [--entities 40] [--batch-size 32]
       [--max-new-tokens 64] [--size tiny] [--reps 2] [--threads 1] [--device cpu]
Prints progress, then ONE JSON object as the last stdout line (an interface), with ``speedup``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entities", type=int, default=40)
    ap.add_argument("--facts", type=int, default=10)
    ap.add_argument("--split", default="forget10")
    ap.add_argument("--size", default="tiny")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: stable on a shared machine)"
    )
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)

    import torch

    from unlearn.data import Dataset, write_dataset
    from unlearn.data.synth import synthesize
    from unlearn.eval import EvalConfig, evaluate_records, split_metrics
    from unlearn.models import build_tiny_model, dataset_texts, train_tokenizer

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tmp = Path(tempfile.mkdtemp(prefix="bench-eval-"))
    splits, pairs = synthesize(args.entities, args.facts, seed=0)
    write_dataset(tmp / "data", splits, source="unlearn.synth", seed=0, pairs=pairs)
    ds = Dataset(tmp / "data")
    rows = ds.records(args.split)
    tok = train_tokenizer(dataset_texts([r for s in ds.splits for r in ds.records(s)]), 2048)
    model = build_tiny_model(tok, args.size).to(args.device).eval()
    n_params = sum(p.numel() for p in model.parameters())

    batched_cfg = EvalConfig(batch_size=args.batch_size, max_new_tokens=args.max_new_tokens)
    single_cfg = EvalConfig(batch_size=1, max_new_tokens=args.max_new_tokens)

    def batched() -> dict:
        return evaluate_records(model, tok, args.split, "forget", rows, batched_cfg)

    def loop() -> dict:
        part = None
        for r in rows:
            one = evaluate_records(model, tok, args.split, "forget", [r], single_cfg)
            if part is None:
                part = {**one, "examples": {}}
            part["examples"].update(one["examples"])
        part["n_total"] = len(rows)
        return part

    # warm-up (allocator, kernels, tokenizer caches) on a few rows
    evaluate_records(model, tok, args.split, "forget", rows[:4], batched_cfg)
    times: dict[str, list[float]] = {"batched": [], "loop": []}
    cpu: dict[str, list[float]] = {"batched": [], "loop": []}
    parts = {}
    for rep in range(args.reps):
        for name, fn in (("batched", batched), ("loop", loop)):
            t, c = time.perf_counter(), time.process_time()
            parts[name] = fn()
            times[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
            print(
                f"rep {rep} {name}: {times[name][-1]:.2f} s wall, {cpu[name][-1]:.2f} s cpu",
                file=sys.stderr,
                flush=True,
            )

    m_batched, _ = split_metrics(parts["batched"])
    m_loop, _ = split_metrics(parts["loop"])
    diff = max(abs(m_batched[k] - m_loop[k]) for k in m_batched)
    same_text = sum(
        parts["batched"]["examples"][i]["generation"]["text"]
        == parts["loop"]["examples"][i]["generation"]["text"]
        for i in parts["batched"]["examples"]
    )
    tb, tl = statistics.median(times["batched"]), statistics.median(times["loop"])
    cb, cl = statistics.median(cpu["batched"]), statistics.median(cpu["loop"])
    n_seq = sum(2 + len(r["perturbed_answers"]) for r in rows)
    result = {
        "speedup": round(cl / cb, 2),
        "speedup_wall": round(tl / tb, 2),
        "batched_cpu_s": round(cb, 3),
        "loop_cpu_s": round(cl, 3),
        "batched_wall_s": round(tb, 3),
        "loop_wall_s": round(tl, 3),
        "batched_examples_per_cpu_s": round(len(rows) / cb, 2),
        "loop_examples_per_cpu_s": round(len(rows) / cl, 2),
        "split": args.split,
        "examples": len(rows),
        "teacher_forced_sequences": n_seq,
        "generations": 2 * len(rows),
        "max_new_tokens": args.max_new_tokens,
        "batch_size": args.batch_size,
        "model": args.size,
        "params": n_params,
        "device": args.device,
        "threads": args.threads,
        "reps": args.reps,
        "max_metric_abs_diff": diff,
        "identical_generations": f"{same_text}/{len(rows)}",
        "metrics_batched": m_batched,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
