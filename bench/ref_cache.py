"""NPO step with a cached reference vs an online reference model: step time and peak memory.

Both modes run the engine's own step (``unlearn.engine``: ``Context`` -> ``NPO.compute`` ->
``TorchBackend.backward/step``, i.e. forward + backward + AdamW step) on the same model and the same
batches (NPO+RT: forget + retain in one joint forward, retain term NLL):

- cached: the reference's summed forget log-probs come from a precomputed cache
  (``Context(..., reference_cache=...)``, computed by the engine's ``reference.stream_logprobs``
  pass, as ``unlearn.engine.loop.train`` does before training);
- online: a second copy of the model is held in memory and run (no grad) on the forget batch every
  step (``Context(..., reference_model=...)``).

Step time: both modes in ONE process, interleaved step by step (order alternating), so the noise
of this shared machine hits both alike; median step time per mode, ratio reported.

Peak memory: each mode in its own fresh subprocess, three measures (docs/benchmarks.md, Engine):

- ``memory_ratio`` (the interface key) = cached / online ``peak_mb``: the kernel's resident
  high-water mark (VmHWM in /proc/self/status) above a baseline taken after imports, data,
  tokenizer, the policy model and its optimizer object are loaded (common to both modes); the
  mark is reset there (``/proc/self/clear_refs`` = 5), then the online mode loads its reference
  model or the cached mode computes its cache, and the steps run. Not
  ``resource.getrusage().ru_maxrss``: a child's ru_maxrss starts at its parent's high-water mark
  (inherited across fork/exec; checked on this machine), so it would measure the driver. Not
  tracemalloc either: torch allocates tensor memory outside Python's allocator.
- ``memory_ratio_tensors``: peak live tensor bytes from the torch profiler's allocation events
  plus the reference model's weights (``worker_tensors``); free of interpreter, library-code
  and allocator noise. Uses the profiler's event tree (a private torch API: None if it moved).
- ``memory_ratio_incl_policy``: the resident high-water mark measured from before the policy
  model was loaded (its weights included), whose ratio is closer to 1.

Usage: .venv/bin/python bench/ref_cache.py [--sizes tiny,small] [--primary small] [--reps 30]
Prints progress, then ONE JSON object as the last stdout line (an interface).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def proc_status_kb(field: str) -> int:
    """A field of /proc/self/status in kB (VmRSS: resident now, VmHWM: resident high-water mark)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0)."""
    Path("/proc/self/clear_refs").write_text("5")


def build_inputs(work: Path, size: str, entities: int, seed: int = 0) -> tuple[Path, Path]:
    """A synthetic dataset and a randomly initialized Llama of ``size`` saved in HF layout."""
    from unlearn.data import write_dataset
    from unlearn.data.synth import synthesize
    from unlearn.models import build_tiny_model, dataset_texts, save_model, train_tokenizer

    data = work / "data"
    if not (data / "dataset.json").exists():
        splits, pairs = synthesize(entities, 4, seed=seed)
        write_dataset(data, splits, source="unlearn.synth", seed=seed, pairs=pairs)
    model = work / f"model-{size}"
    if not (model / "config.json").exists():
        from unlearn.data import Dataset

        ds = Dataset(data)
        records = [r for s in ds.splits for r in ds.records(s)]
        tok = train_tokenizer(dataset_texts(records), vocab_size=2048)
        save_model(build_tiny_model(tok, size, max_positions=128, seed=seed), tok, model)
    return data, model


def run_cfg(data: Path, model: Path, batch: int, reference: str):  # noqa: ANN201
    """The RunConfig of an NPO+RT run on the torch backend, one micro-batch per step."""
    from unlearn.config import load_config
    from unlearn.engine.config import RunConfig

    return load_config(
        RunConfig,
        None,
        [
            f"data.path={data}",
            f"model.path={model}",
            "output.dir=unused",
            "data.max_length=64",
            "method.name=npo",
            "method.retain_loss=nll",
            f"method.reference={reference}",
            "backend.kind=torch",
            f"train.batch_size={batch}",
            f"train.micro_batch_size={batch}",
            "train.lr=1e-5",
            "train.warmup_epochs=0",
            "train.schedule=constant",
        ],
    )


class Setup:
    """Model, backend, streams and a fixed list of batches, as the engine's loop builds them."""

    def __init__(self, data: Path, model_dir: Path, batch: int, n_batches: int):
        import torch

        from unlearn.data import Dataset
        from unlearn.engine.backend import make_backend
        from unlearn.engine.data import Schedule
        from unlearn.engine.loop import build_streams
        from unlearn.methods import build_method
        from unlearn.models import load_model

        torch.manual_seed(0)
        self.cfg = run_cfg(data, model_dir, batch, "cached")
        self.cfg_online = run_cfg(data, model_dir, batch, "online")
        self.model_dir = model_dir
        self.rss_before_model_kb = proc_status_kb("VmRSS")
        model, tok = load_model(model_dir)
        model.config.use_cache = False
        self.pad_id = tok.pad_token_id
        self.cached = build_method(self.cfg.method)
        self.online = build_method(self.cfg_online.method)
        self.streams = build_streams(self.cfg, self.cached.streams, Dataset(data), tok)
        self.device = torch.device("cpu")
        self.backend = make_backend(model, self.cfg, 10**6, 0, self.device, 1)
        self.backend.model.train()
        self.n_params = sum(p.numel() for p in model.parameters())
        schedule = Schedule(
            primary_size=len(self.streams["forget"]),
            retain_size=len(self.streams["retain"]),
            batch_size=batch,
            micro_batch_size=batch,
            world_size=1,
            seed=0,
        )
        self.batches = []
        epoch = 0
        while len(self.batches) < n_batches:
            for micro in schedule.epoch(epoch, 0):
                mb = micro[0]
                self.batches.append(
                    {
                        "forget": [self.streams["forget"][i] for i in mb["primary"]],
                        "retain": [self.streams["retain"][i] for i in mb["retain"]],
                    }
                )
            epoch += 1
        self.batches = self.batches[:n_batches]
        self.reference_model = None
        self.cache = None

    def load_reference_model(self) -> None:
        """The online mode's second model, frozen, as ``train`` loads it."""
        from unlearn.models import load_model

        ref, _ = load_model(self.model_dir, with_tokenizer=False)
        ref.config.use_cache = False
        self.reference_model = ref.to(self.device).eval().requires_grad_(False)

    def compute_cache(self) -> None:
        """The cached mode's pre-pass: forget-stream summed log-probs from the starting model."""
        from unlearn.engine import reference

        self.backend.model.eval()
        self.cache = {
            s: reference.stream_logprobs(
                self.backend.forward,
                self.streams[s],
                batch_size=self.cfg.train.micro_batch_size * 2,
                rank=0,
                world_size=1,
                pad_id=self.pad_id,
                device=self.device,
            )["sum"]
            for s in self.cached.cached_reference
        }
        self.backend.model.train()

    def step(self, mode: str, batch: dict) -> float:
        """One optimizer step (forward + backward + AdamW) through the engine; wall seconds."""
        from unlearn.engine.context import Context

        t0 = time.perf_counter()
        if mode == "cached":
            ctx = Context.from_streams(
                self.backend.forward, batch, self.pad_id, self.device, reference_cache=self.cache
            )
            out = self.cached.compute(ctx)
        else:
            ctx = Context.from_streams(
                self.backend.forward,
                batch,
                self.pad_id,
                self.device,
                reference_model=self.reference_model,
            )
            out = self.online.compute(ctx)
        self.backend.backward(out.loss)
        self.backend.step()
        return time.perf_counter() - t0


def worker_time(args: argparse.Namespace) -> dict:
    """Both modes in one process, interleaved; median step times."""
    import torch

    torch.set_num_threads(args.threads)
    s = Setup(Path(args.data), Path(args.model), args.batch, n_batches=8)
    s.compute_cache()
    s.load_reference_model()
    times: dict[str, list[float]] = {"cached": [], "online": []}
    for rep in range(args.warmup + args.reps):
        batch = s.batches[rep % len(s.batches)]
        order = ("cached", "online") if rep % 2 == 0 else ("online", "cached")
        for mode in order:
            t = s.step(mode, batch)
            if rep >= args.warmup:
                times[mode].append(t)
    tokens = [
        sum(int(p["attention_mask"].sum()) for p in b.values()) for b in s.batches[: args.reps]
    ]
    return {
        "params": s.n_params,
        "threads": args.threads,
        "trained_tokens_per_step_mean": statistics.mean(tokens),
        "median_step_s": {m: statistics.median(v) for m, v in times.items()},
        "p10_step_s": {m: sorted(v)[len(v) // 10] for m, v in times.items()},
        "p90_step_s": {m: sorted(v)[(9 * len(v)) // 10] for m, v in times.items()},
        "steps_timed": args.reps,
    }


def worker_mem(args: argparse.Namespace) -> dict:
    """One mode alone in this fresh process: resident high-water mark above the common baseline."""
    import torch

    torch.set_num_threads(args.threads)
    s = Setup(Path(args.data), Path(args.model), args.batch, n_batches=8)
    gc.collect()
    load_hwm_kb = proc_status_kb("VmHWM")  # includes any transient of loading the policy model
    baseline_kb = proc_status_kb("VmRSS")
    reset_peak()
    if args.mode == "online":
        s.load_reference_model()
    else:
        s.compute_cache()
    for rep in range(args.mem_steps):
        s.step(args.mode, s.batches[rep % len(s.batches)])
    hwm_kb = proc_status_kb("VmHWM")
    return {
        "mode": args.mode,
        "baseline_rss_mb": baseline_kb / 1024,
        "peak_mb": (hwm_kb - baseline_kb) / 1024,
        "peak_incl_policy_mb": (max(hwm_kb, load_hwm_kb) - s.rss_before_model_kb) / 1024,
        "hwm_total_mb": hwm_kb / 1024,
    }


def worker_tensors(args: argparse.Namespace) -> dict:
    """One mode alone in this fresh process: peak live tensor bytes (torch profiler allocations).

    The profiler's allocation events carry the CPU allocator's running total of bytes allocated
    while profiling (frees of older tensors are not counted), so its maximum is the peak of tensor
    memory the mode allocated: gradients, AdamW state and its temporaries, activations, the
    cache. The reference model's weights are mapped from its safetensors file by
    ``from_pretrained`` (zero-copy), which the allocator never sees: their exact bytes are added.
    """
    import torch
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(args.threads)
    s = Setup(Path(args.data), Path(args.model), args.batch, n_batches=8)
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        if args.mode == "online":
            s.load_reference_model()
        else:
            s.compute_cache()
        for rep in range(args.mem_steps):
            s.step(args.mode, s.batches[rep % len(s.batches)])

    def walk(nodes: list) -> list:
        out = []
        for n in nodes:
            out.append(n)
            out.extend(walk(n.children))
        return out

    try:
        events = walk(prof.profiler.kineto_results.experimental_event_tree())
        totals = [n.extra_fields.total_allocated for n in events if n.tag == _EventType.Allocation]
    except AttributeError:  # private profiler API changed: no tensor measure
        return {"mode": args.mode, "allocator_peak_mb": None, "tensor_peak_mb": None}
    ref_weights = 0
    if s.reference_model is not None:
        seen = set()
        for t in list(s.reference_model.parameters()) + list(s.reference_model.buffers()):
            st = t.untyped_storage()
            if st.data_ptr() not in seen:
                seen.add(st.data_ptr())
                ref_weights += st.nbytes()
    return {
        "mode": args.mode,
        "allocator_peak_mb": max(totals) / 2**20,
        "reference_weights_mb": ref_weights / 2**20,
        "tensor_peak_mb": (max(totals) + ref_weights) / 2**20,
    }


def child(args: argparse.Namespace, kind: str, size: str, data: Path, model: Path, **extra) -> dict:
    """Run a worker in a fresh Python process; returns the JSON it prints last."""
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        kind,
        "--data",
        str(data),
        "--model",
        str(model),
        "--batch",
        str(args.batch),
        "--threads",
        str(args.threads),
        "--warmup",
        str(args.warmup),
        "--reps",
        str(args.reps),
        "--mem-steps",
        str(args.mem_steps),
    ]
    for k, v in extra.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_size(args: argparse.Namespace, size: str, work: Path) -> dict:
    """Timing (one process, interleaved) and memory (one fresh process per mode, repeated)."""
    data, model = build_inputs(work, size, args.entities)
    t0 = time.time()
    timing = child(args, "time", size, data, model)
    print(f"[{size}] timing {timing['median_step_s']} ({time.time() - t0:.0f}s)", flush=True)
    mem: dict[str, list[dict]] = {"cached": [], "online": []}
    for rep in range(args.mem_reps):
        for mode in ("cached", "online") if rep % 2 == 0 else ("online", "cached"):
            mem[mode].append(child(args, "mem", size, data, model, mode=mode))
    tensors = {m: child(args, "tensors", size, data, model, mode=m) for m in ("cached", "online")}
    peak = {m: statistics.median(r["peak_mb"] for r in v) for m, v in mem.items()}
    peak_incl = {m: statistics.median(r["peak_incl_policy_mb"] for r in v) for m, v in mem.items()}
    print(f"[{size}] RSS peak above baseline MB {peak}, incl. policy {peak_incl}", flush=True)
    print(f"[{size}] tensors {tensors}", flush=True)
    med = timing["median_step_s"]
    return {
        "size": size,
        "params": timing["params"],
        "fp32_weights_mb": timing["params"] * 4 / 2**20,
        "speedup": med["online"] / med["cached"],
        "memory_ratio": peak["cached"] / peak["online"],
        "memory_ratio_incl_policy": peak_incl["cached"] / peak_incl["online"],
        "memory_ratio_tensors": (
            tensors["cached"]["tensor_peak_mb"] / tensors["online"]["tensor_peak_mb"]
            if tensors["online"]["tensor_peak_mb"]
            else None
        ),
        "tensor_peak_mb": {m: r["tensor_peak_mb"] for m, r in tensors.items()},
        "tensors": tensors,
        "step_s": med,
        "step_s_p10": timing["p10_step_s"],
        "step_s_p90": timing["p90_step_s"],
        "peak_mb": peak,
        "peak_incl_policy_mb": peak_incl,
        "baseline_rss_mb": {
            m: statistics.median(r["baseline_rss_mb"] for r in v) for m, v in mem.items()
        },
        "memory_runs": mem,
        "trained_tokens_per_step": timing["trained_tokens_per_step_mean"],
        "steps_timed": timing["steps_timed"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="tiny,small", help="model sizes (unlearn.models.SIZES)")
    p.add_argument("--primary", default="small", help="size whose ratios are the top-level keys")
    p.add_argument("--batch", type=int, default=8, help="forget rows per step (+ as many retain)")
    p.add_argument("--reps", type=int, default=30, help="timed steps per mode")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--mem-steps", type=int, default=3, help="steps in each memory process")
    p.add_argument("--mem-reps", type=int, default=1, help="RSS processes per mode")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: shared 2-core box)")
    p.add_argument("--entities", type=int, default=100)
    p.add_argument("--work", default=None, help="where data and models go (default: a temp dir)")
    # internal: worker processes
    p.add_argument("--worker", choices=["time", "mem", "tensors"], help=argparse.SUPPRESS)
    p.add_argument("--mode", choices=["cached", "online"], help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        fn = {"time": worker_time, "mem": worker_mem, "tensors": worker_tensors}[args.worker]
        print(json.dumps(fn(args)))
        return

    t0 = time.time()
    sizes = [s for s in args.sizes.split(",") if s]
    if args.primary not in sizes:
        p.error(f"--primary {args.primary} is not among --sizes {sizes}")
    with tempfile.TemporaryDirectory(prefix="bench-ref-cache-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        results = {s: bench_size(args, s, work) for s in sizes}
    top = results[args.primary]
    summary = {
        "bench": "ref_cache",
        "speedup": top["speedup"],
        "memory_ratio": top["memory_ratio"],
        "primary_size": args.primary,
        "targets": {"speedup_min": 1.3, "memory_ratio_max": 0.6},
        "sizes": {
            s: {k: v for k, v in r.items() if k != "memory_runs"} for s, r in results.items()
        },
        "memory_runs": {s: r["memory_runs"] for s, r in results.items()},
        "config": {
            "method": "npo (retain nll)",
            "backend": "torch fp32 CPU",
            "batch_forget": args.batch,
            "batch_retain": args.batch,
            "threads": args.threads,
            "reps": args.reps,
            "warmup": args.warmup,
        },
        "wall_s": time.time() - t0,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
