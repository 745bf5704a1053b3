"""Steady-state step time: Ray Train + DeepSpeed (ZeRO-2, 1 worker) vs a plain hand-written torch loop.

Same model (a randomly initialized Llama of ``--size``, saved in HF layout), same data (the
synthetic benchmark's ``full`` split, tokenized with the shared prompt format), same batches in the
same order (the engine's ``Schedule``), same work per step: fine-tuning (NLL on answer tokens),
fp32, AdamW, gradient clipping at 1.0, one micro-batch per step, one CPU thread.

- Ray path: ``jobs.common.run_training(cfg)`` -> Ray Train ``TorchTrainer`` with one worker ->
  ``unlearn.engine.loop.train`` with the DeepSpeed backend (ZeRO stage 2). Per-step times are the
  engine's own ``step_time_s`` from the run's metrics.jsonl (from collating the batch to the logged
  record: forward, backward, DeepSpeed step, the per-step all-reduce and progress report).
- Plain path: a minimal loop in this process: collate, forward, cross-entropy on answer tokens
  (per-example mean, as the engine), backward, clip, AdamW step, zero_grad; timed over the same
  span. It runs under the same glibc allocator policy the engine sets for CPU training
  (``unlearn.engine.backend.keep_freed_cpu_memory``), so the ratio is about Ray + DeepSpeed +
  engine code, not the allocator.
- Engine without Ray (attribution only): the engine's step with its DeepSpeed backend in this
  process, in a thread as Ray Train runs it; also counts minor page faults per step.

Per batch size (``--batches``, default 8 then 32): plain, engine without Ray, the Ray run, plain
again (interleaved, as the machine is shared and noisy); warm-up steps are dropped from every run;
medians are compared. ``overhead`` = median Ray+DeepSpeed step time / median plain step time, for
the first batch size; every batch size's numbers are under ``by_batch``.

Usage: .venv/bin/python bench/engine_overhead.py [--size small] [--batches 8,32] [--warmup 3]
Prints progress, then ONE JSON object as the last stdout line (an interface).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # Ray on loopback (ray.md)


def build_inputs(work: Path, size: str, entities: int, seed: int = 0) -> tuple[Path, Path]:
    """A synthetic dataset and a randomly initialized Llama of ``size`` saved in HF layout."""
    from unlearn.data import Dataset, write_dataset
    from unlearn.data.synth import synthesize
    from unlearn.models import build_tiny_model, dataset_texts, save_model, train_tokenizer

    data = work / "data"
    if not (data / "dataset.json").exists():
        splits, pairs = synthesize(entities, 4, seed=seed)
        write_dataset(data, splits, source="unlearn.synth", seed=seed, pairs=pairs)
    model = work / f"model-{size}"
    if not (model / "config.json").exists():
        ds = Dataset(data)
        records = [r for s in ds.splits for r in ds.records(s)]
        tok = train_tokenizer(dataset_texts(records), vocab_size=2048)
        save_model(build_tiny_model(tok, size, max_positions=128, seed=seed), tok, model)
    return data, model


def run_cfg(data: Path, model: Path, out: Path, batch: int, epochs: int = 1):  # noqa: ANN201
    """Fine-tuning on ``full``, DeepSpeed ZeRO-2, 1 worker x 1 CPU, fp32."""
    from unlearn.config import load_config
    from unlearn.engine.config import RunConfig

    return load_config(
        RunConfig,
        None,
        [
            f"data.path={data}",
            f"model.path={model}",
            f"output.dir={out}",
            "output.overwrite=true",
            "output.checkpoint_every=1000",  # only the final checkpoint (outside step times)
            "data.max_length=64",
            "data.train_splits=[full]",
            "method.name=finetune",
            "backend.kind=deepspeed",
            "backend.zero_stage=2",
            "backend.precision=fp32",
            "scaling.num_workers=1",
            "scaling.cpus_per_worker=1",
            "scaling.max_failures=0",
            f"train.epochs={epochs}",
            f"train.batch_size={batch}",
            f"train.micro_batch_size={batch}",
            "train.lr=1e-4",
            "train.warmup_epochs=0",
            "train.max_grad_norm=1.0",
        ],
    )


def plain_loop(cfg, steps: int, threads: int) -> dict:  # noqa: ANN001
    """A minimal torch training loop over the engine's batches; per-step wall times."""
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from unlearn.data import Dataset
    from unlearn.engine.data import Schedule, collate, tokenize

    torch.set_num_threads(threads)
    torch.manual_seed(cfg.train.seed)
    tok = AutoTokenizer.from_pretrained(cfg.model.path)
    model = AutoModelForCausalLM.from_pretrained(cfg.model.path, dtype=torch.float32)
    model.config.use_cache = False
    model.train()
    records = [r for s in cfg.data.train_splits for r in Dataset(cfg.data.path).records(s)]
    examples = tokenize(tok, records, cfg.data.max_length)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=0.01)
    schedule = Schedule(len(examples), 0, cfg.train.batch_size, cfg.train.batch_size, 1, 0)
    batches = [micro[0]["primary"] for micro in schedule.epoch(0, 0)]
    times, faults = [], []
    for step in range(steps):
        f0 = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
        t0 = time.perf_counter()
        b = collate([examples[i] for i in batches[step % len(batches)]], tok.pad_token_id)
        logits = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
        labels = b["labels"][:, 1:]
        nll = F.cross_entropy(
            logits[:, :-1].transpose(1, 2), labels, ignore_index=-100, reduction="none"
        )
        mask = labels != -100
        loss = ((nll * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        float(loss.detach())
        times.append(time.perf_counter() - t0)
        faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - f0)
    n_params = sum(p.numel() for p in model.parameters())
    return {
        "times": times,
        "faults": faults,
        "threads": torch.get_num_threads(),
        "params": n_params,
    }


def engine_loop(cfg, steps: int, threads: int) -> dict:  # noqa: ANN001
    """The engine's step with its DeepSpeed backend in this process, without Ray (attribution).

    Runs in a thread, as Ray Train runs the loop, over the same batches; times the same span as
    the engine's ``step_time_s`` (collate, Context, method, backward, DeepSpeed step).
    """
    import threading

    import torch

    from unlearn.data import Dataset
    from unlearn.engine.backend import make_backend
    from unlearn.engine.context import Context
    from unlearn.engine.data import Schedule, tokenize
    from unlearn.engine.distributed import init_single_process
    from unlearn.methods import build_method
    from unlearn.models import load_model

    out: dict = {}

    def run() -> None:
        torch.set_num_threads(threads)
        torch.manual_seed(cfg.train.seed)
        init_single_process("gloo")
        model, tok = load_model(cfg.model.path)
        model.config.use_cache = False
        records = [r for s in cfg.data.train_splits for r in Dataset(cfg.data.path).records(s)]
        examples = tokenize(tok, records, cfg.data.max_length)
        backend = make_backend(model, cfg, 10**6, 0, torch.device("cpu"), 1)
        backend.model.train()
        method = build_method(cfg.method)
        schedule = Schedule(len(examples), 0, cfg.train.batch_size, cfg.train.batch_size, 1, 0)
        batches = [micro[0]["primary"] for micro in schedule.epoch(0, 0)]
        times, faults = [], []
        for step in range(steps):
            f0 = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
            t0 = time.perf_counter()
            rows = {"train": [examples[i] for i in batches[step % len(batches)]]}
            res = method.compute(Context.from_streams(backend.forward, rows, tok.pad_token_id))
            backend.backward(res.loss)
            backend.step()
            times.append(time.perf_counter() - t0)
            faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - f0)
        out.update(times=times, faults=faults)

    th = threading.Thread(target=run)
    th.start()
    th.join()
    return out


def ray_worker_threads() -> int:
    """torch's intra-op threads in a 1-CPU Ray actor (Ray sets OMP_NUM_THREADS from num_cpus)."""
    import ray

    @ray.remote(num_cpus=1)
    def probe() -> int:
        import torch

        return torch.get_num_threads()

    return ray.get(probe.remote())


def median_after(xs: list[float], warmup: int) -> float:
    """Median of a run's steps after the warm-up ones."""
    return statistics.median(xs[warmup:])


def bench_batch(args: argparse.Namespace, data: Path, model: Path, work: Path, batch: int) -> dict:
    """plain -> engine in-process -> Ray+DeepSpeed -> plain, for one batch size."""
    from jobs.common import run_training

    rows = 4 * args.entities
    epochs = math.ceil((args.warmup + args.ray_steps) / math.ceil(rows / batch))
    cfg = run_cfg(data, model, work / f"run-b{batch}", batch, epochs)
    w = args.warmup
    plain_before = plain_loop(cfg, args.steps, args.threads)
    print(f"[b{batch}] plain: {median_after(plain_before['times'], w):.4f}s", flush=True)
    engine = engine_loop(cfg, args.steps, args.threads)
    print(f"[b{batch}] engine DS2, no Ray: {median_after(engine['times'], w):.4f}s", flush=True)
    t0 = time.time()
    summary = run_training(cfg, show_progress=False)
    ray_wall = time.time() - t0
    rows_ = (work / f"run-b{batch}" / "metrics.jsonl").read_text().splitlines()
    ray_times = [json.loads(x)["step_time_s"] for x in rows_ if '"step_time_s"' in x]
    print(
        f"[b{batch}] ray+deepspeed: {len(ray_times)} steps, "
        f"{median_after(ray_times, w):.4f}s (run wall {ray_wall:.0f}s)",
        flush=True,
    )
    plain_after = plain_loop(cfg, args.steps, args.threads)
    print(f"[b{batch}] plain again: {median_after(plain_after['times'], w):.4f}s", flush=True)
    plain = plain_before["times"][w:] + plain_after["times"][w:]
    med_ray, med_plain = median_after(ray_times, w), statistics.median(plain)
    med_engine = median_after(engine["times"], w)
    return {
        "batch": batch,
        "overhead": med_ray / med_plain,
        "engine_no_ray_overhead": med_engine / med_plain,
        "ray_deepspeed_step_s": med_ray,
        "engine_no_ray_step_s": med_engine,
        "plain_step_s": med_plain,
        "plain_step_s_before_after": [
            median_after(plain_before["times"], w),
            median_after(plain_after["times"], w),
        ],
        "ray_step_s_p10_p90": [
            sorted(ray_times[w:])[len(ray_times[w:]) // 10],
            sorted(ray_times[w:])[(9 * len(ray_times[w:])) // 10],
        ],
        "minor_faults_per_step": {
            "plain": statistics.median(plain_before["faults"][w:] + plain_after["faults"][w:]),
            "engine_no_ray": statistics.median(engine["faults"][w:]),
        },
        "ray_steps": len(ray_times),
        "ray_run_wall_s": ray_wall,
        "ray_run_status": summary.get("status"),
        "params": plain_before["params"],
        "plain_threads": plain_before["threads"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="small", help="model size (unlearn.models.SIZES)")
    p.add_argument("--entities", type=int, default=60, help="full split = 4 x entities rows")
    p.add_argument("--batches", default="8,32", help="batch sizes; the first gives `overhead`")
    p.add_argument("--steps", type=int, default=15, help="plain / in-process steps per run")
    p.add_argument("--ray-steps", type=int, default=20, help="Ray steps after warm-up (at least)")
    p.add_argument("--warmup", type=int, default=3, help="steps dropped from every run")
    p.add_argument("--threads", type=int, default=1, help="plain loop threads (= Ray worker's)")
    p.add_argument("--work", default=None, help="where data, model and the run go (default: temp)")
    args = p.parse_args()

    import torch

    from jobs.common import init_ray
    from unlearn.engine.backend import keep_freed_cpu_memory

    # The engine sets this glibc allocator policy in every CPU training process (make_backend);
    # the plain loop gets the same, so the ratio isolates Ray + DeepSpeed + engine code.
    allocator_policy = keep_freed_cpu_memory()
    t_start = time.time()
    batches = [int(b) for b in args.batches.split(",") if b]
    with tempfile.TemporaryDirectory(prefix="bench-engine-overhead-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        data, model = build_inputs(work, args.size, args.entities)
        init_ray(num_cpus=2)
        threads_in_ray = ray_worker_threads()
        results = [bench_batch(args, data, model, work, b) for b in batches]
    top = results[0]
    out = {
        "bench": "engine_overhead",
        "overhead": top["overhead"],
        "target_max": 1.15,
        "batch": top["batch"],
        "ray_deepspeed_step_s": top["ray_deepspeed_step_s"],
        "plain_step_s": top["plain_step_s"],
        "by_batch": {str(r["batch"]): r for r in results},
        "warmup_dropped": args.warmup,
        "allocator_policy_in_plain_loop": allocator_policy,
        "threads": {"plain": top["plain_threads"], "ray_worker": threads_in_ray},
        "config": {
            "size": args.size,
            "params": top["params"],
            "method": "finetune",
            "backend": "deepspeed zero2 fp32, 1 Ray Train worker x 1 CPU",
            "rows": 4 * args.entities,
            "torch": torch.__version__,
        },
        "wall_s": time.time() - t_start,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
