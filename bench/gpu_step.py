"""NPO+RT step on one GPU through the library's engine (no Ray): tokens/s and MFU.

For the H200 test machine (docs/benchmarks.md, "Engine", says how to bring DeepSpeed there). A
randomly initialized Llama of ~1.1B parameters (TinyLlama-1.1B's shape: hidden 2048, 22 layers,
32 heads, 4 KV heads, MLP 5632, vocab 32000, untied head) in bf16 is trained with NPO + retain NLL
through ``unlearn.engine`` exactly as a worker does: ``init_single_process("nccl")``,
``make_backend`` (DeepSpeed, ZeRO-2 or ZeRO-3, bf16, the engine's client AdamW), the joint
forget+retain forward of ``Context``, ``NPO.compute``, ``backend.backward`` / ``backend.step``.
Four configurations, each in a fresh subprocess (clean peak-memory counters, and one failing does
not lose the others): ZeRO-2 / ZeRO-3 x reference cached (``reference.stream_logprobs`` pass first,
as ``train`` does) / online (a second bf16 copy of the model run on the forget batch every step).

Batches are random token ids (no padding): 8 forget + 8 retain rows of 512 tokens, the first
quarter of each row a masked "question". Step time = wall time of the whole optimizer step with
``cuda.synchronize`` at both ends, median after warm-up.

MFU (docs/../shared/reference/gpu.md): model FLOPs per trained token
  6 x N + 12 x layers x hidden x seq_len
with N the non-embedding parameters (input embedding and LM head excluded), times trained tokens
per second (forget + retain tokens: every token of the joint forward is trained), over 989e12
(H200 dense bf16 peak); ``mfu_vs_matmul`` divides by the measured 8192^3 bf16 matmul rate
instead. ``mfu_with_lm_head`` adds the LM head's matmul (6 x vocab x hidden per token). The
online reference's extra forward is not model FLOPs of training: it lowers MFU, as it should;
``hfu`` (hardware FLOPs) counts it too.

``--smoke`` runs the same code on CPU (gloo, a 2-layer toy Llama, 2 steps) so a test can check the
script executes and its JSON keys; its numbers mean nothing.

Usage: python3 bench/gpu_step.py [--out DIR] [--configs zero2-cached,...] [--steps 10]
       python3 bench/gpu_step.py --smoke
Prints progress, then ONE JSON object as the last stdout line (an interface); with ``--out`` the
same JSON goes to DIR/gpu_step.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PEAK_BF16 = 989e12  # H200 SXM dense bf16, FLOP/s
CONFIGS = ("zero2-cached", "zero2-online", "zero3-cached", "zero3-online")
# name -> hidden, layers, heads, kv heads, intermediate, vocab
SHAPES = {
    "1b": (2048, 22, 32, 4, 5632, 32000),  # TinyLlama-1.1B
    "smoke": (64, 2, 4, 2, 128, 256),
}


def model_counts(shape: tuple[int, ...]) -> dict[str, int]:
    """Parameter counts of a Llama of this shape (untied head)."""
    hidden, layers, heads, kv, inter, vocab = shape
    head_dim = hidden // heads
    attn = hidden * hidden * 2 + 2 * hidden * kv * head_dim  # q, o + k, v
    mlp = 3 * hidden * inter
    per_layer = attn + mlp + 2 * hidden  # + two RMSNorm weights
    non_embedding = layers * per_layer + hidden  # + final norm
    return {
        "non_embedding": non_embedding,
        "embedding": vocab * hidden,
        "lm_head": vocab * hidden,
        "total": non_embedding + 2 * vocab * hidden,
    }


def flops(shape: tuple[int, ...], seq: int) -> dict[str, float]:
    """Per-token FLOPs: training (fwd+bwd) per gpu.md, with the LM head, and a forward alone."""
    hidden, layers, *_ = shape
    vocab = shape[5]
    n = model_counts(shape)["non_embedding"]
    attention = 12 * layers * hidden * seq
    return {
        "train": 6 * n + attention,
        "train_lm_head": 6 * n + attention + 6 * vocab * hidden,
        "forward_lm_head": (6 * n + attention + 6 * vocab * hidden) / 3,
    }


def matmul_rate(device: str, n: int, iters: int) -> float:
    """Measured dense bf16 matmul rate (FLOP/s) for n x n x n."""
    import torch

    a = torch.randn(n, n, dtype=torch.bfloat16, device=device)
    b = torch.randn(n, n, dtype=torch.bfloat16, device=device)
    for _ in range(3):
        a @ b
    sync(device)
    t0 = time.perf_counter()
    for _ in range(iters):
        a @ b
    sync(device)
    return 2 * n**3 * iters / (time.perf_counter() - t0)


def sync(device: str) -> None:
    """Wait for the device."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_memory_gb(device: str) -> float:
    """Peak GPU memory allocated by torch, or the process's resident high-water mark on CPU."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**30
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def worker(args: argparse.Namespace) -> dict:
    """One configuration, in this (fresh) process, through the engine."""
    import copy

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from unlearn.config import load_config
    from unlearn.engine import reference
    from unlearn.engine.backend import make_backend
    from unlearn.engine.config import RunConfig
    from unlearn.engine.context import Context, joint_batch
    from unlearn.engine.data import Example
    from unlearn.engine.distributed import init_single_process
    from unlearn.methods import build_method
    from unlearn.models.prompting import IGNORE_INDEX

    stage, ref_mode = args.worker.split("-")
    zero = int(stage.removeprefix("zero"))
    gpu = not args.smoke
    device = "cuda:0" if gpu else "cpu"
    if gpu:
        torch.cuda.set_device(0)
    init_single_process("nccl" if gpu else "gloo")
    torch.manual_seed(0)
    hidden, layers, heads, kv, inter, vocab = shape = SHAPES["smoke" if args.smoke else "1b"]
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        intermediate_size=inter,
        max_position_embeddings=max(2048, args.seq),
        tie_word_embeddings=False,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        use_cache=False,
    )
    with torch.device(device):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    n_params = sum(p.numel() for p in model.parameters())
    reference_model = None
    if ref_mode == "online":  # the starting weights, frozen, as train() loads them
        reference_model = copy.deepcopy(model).eval().requires_grad_(False)

    cfg = load_config(
        RunConfig,
        None,
        [
            "data.path=synthetic-random-tokens",
            "model.path=random-init",
            "model.dtype=bfloat16",
            f"output.dir={args.out or 'unused'}",
            "method.name=npo",
            "method.retain_loss=nll",
            f"method.reference={ref_mode}",
            "backend.kind=deepspeed",
            f"backend.zero_stage={zero}",
            "backend.precision=bf16",
            f"scaling.use_gpu={str(gpu).lower()}",
            f"train.batch_size={args.rows}",
            f"train.micro_batch_size={args.rows}",
            "train.lr=1e-5",
            "train.warmup_epochs=0",
            "train.schedule=constant",
        ],
    )
    method = build_method(cfg.method)
    n_steps = args.warmup + args.steps
    backend = make_backend(model, cfg, n_steps, 0, torch.device(device), 1)
    backend.model.train()

    gen = torch.Generator().manual_seed(1)
    question = args.seq // 4

    def examples(n: int) -> list[Example]:
        out = []
        for i in range(n):
            ids = torch.randint(3, vocab, (args.seq,), generator=gen).tolist()
            labels = [IGNORE_INDEX] * question + ids[question:]
            out.append(Example(i, f"x{i}", ids, labels))
        return out

    forget, retain = examples(args.rows * n_steps), examples(args.rows * n_steps)
    cache, cache_s = None, 0.0
    if ref_mode == "cached":
        backend.model.eval()
        sync(device)
        t0 = time.perf_counter()
        cache = {
            "forget": reference.stream_logprobs(
                backend.forward,
                forget,
                batch_size=args.rows * 2,
                rank=0,
                world_size=1,
                pad_id=0,
                device=torch.device(device),
            )["sum"]
        }
        sync(device)
        cache_s = time.perf_counter() - t0
        backend.model.train()

    times, losses = [], []
    for step in range(n_steps):
        rows = slice(step * args.rows, (step + 1) * args.rows)
        streams = {"forget": forget[rows], "retain": retain[rows]}
        batch, parts = joint_batch(streams, 0)
        batch = {k: t.to(device) for k, t in batch.items()}
        sync(device)
        t0 = time.perf_counter()
        ctx = Context(backend.forward, batch, parts, (), reference_model, cache)
        out = method.compute(ctx)
        backend.backward(out.loss)
        backend.step()
        sync(device)
        times.append(time.perf_counter() - t0)
        losses.append(float(out.loss.detach().float()))
        print(f"[{args.worker}] step {step} {times[-1]:.3f}s loss {losses[-1]:.4f}", flush=True)

    step_s = statistics.median(times[args.warmup :])
    tokens = 2 * args.rows * args.seq  # forget + retain, no padding
    f = flops(shape, args.seq)
    ref_flops = f["forward_lm_head"] * args.rows * args.seq if ref_mode == "online" else 0.0
    return {
        "config": args.worker,
        "zero_stage": zero,
        "reference": ref_mode,
        "params": n_params,
        "step_s": step_s,
        "step_s_all": times,
        "tokens_per_step": tokens,
        "tokens_per_s": tokens / step_s,
        "model_flops_per_s": f["train"] * tokens / step_s,
        "mfu": f["train"] * tokens / step_s / PEAK_BF16,
        "mfu_with_lm_head": f["train_lm_head"] * tokens / step_s / PEAK_BF16,
        "hfu": (f["train_lm_head"] * tokens + ref_flops) / step_s / PEAK_BF16,
        "cache_pass_s": cache_s,
        "cache_pass_tokens": len(forget) * args.seq if ref_mode == "cached" else 0,
        "peak_memory_gb": peak_memory_gb(device),
        "losses": losses,
        "finite": all(x == x and abs(x) != float("inf") for x in losses),
    }


def run_config(args: argparse.Namespace, name: str) -> dict:
    """A configuration in a fresh Python process; its JSON, or the error it died with."""
    cmd = [sys.executable, __file__, "--worker", name, "--seq", str(args.seq)]
    cmd += ["--rows", str(args.rows), "--steps", str(args.steps), "--warmup", str(args.warmup)]
    if args.smoke:
        cmd.append("--smoke")
    if args.out:
        cmd += ["--out", args.out]
    env = dict(os.environ)
    if args.smoke:
        env["DS_ACCELERATOR"] = "cpu"
    env.pop("MASTER_PORT", None)  # each process picks a free one
    t0 = time.time()
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=env, timeout=args.config_timeout
        )
    except subprocess.TimeoutExpired as exc:
        return {"config": name, "error": f"timed out after {exc.timeout}s"}
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-25:]
    if args.out:
        (Path(args.out) / f"{name}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        return {"config": name, "error": f"exit {proc.returncode}", "tail": tail}
    try:
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    except (json.JSONDecodeError, IndexError):
        return {"config": name, "error": "no JSON", "tail": tail}
    result["wall_s"] = time.time() - t0
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="CPU, toy model, 2 steps: a test mode")
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--seq", type=int, default=None, help="tokens per row (512; smoke 32)")
    p.add_argument("--rows", type=int, default=None, help="forget rows per step (8; smoke 2)")
    p.add_argument("--steps", type=int, default=None, help="timed steps (10; smoke 2)")
    p.add_argument("--warmup", type=int, default=None, help="untimed first steps (3; smoke 1)")
    p.add_argument("--config-timeout", type=int, default=480, help="seconds per configuration")
    p.add_argument("--out", default=None, help="directory for gpu_step.json and per-config logs")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    defaults = {"seq": (32, 512), "rows": (2, 8), "steps": (2, 10), "warmup": (1, 3)}
    for key, (smoke, full) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, smoke if args.smoke else full)
    if args.worker:
        print(json.dumps(worker(args)))
        return

    import torch

    t_start = time.time()
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
    gpu = torch.cuda.is_available() and not args.smoke
    if not gpu and not args.smoke:
        p.error("no CUDA device: run on the GPU machine, or use --smoke on CPU")
    device = "cuda:0" if gpu else "cpu"
    device_name = torch.cuda.get_device_name(0) if gpu else "cpu (smoke)"
    n = 8192 if gpu else 256
    rate = matmul_rate(device, n, 20 if gpu else 3)
    print(f"{device_name}: {n}^3 bf16 matmul {rate / 1e12:.1f} TFLOP/s", flush=True)
    shape = SHAPES["smoke" if args.smoke else "1b"]
    results = {}
    for name in [c for c in args.configs.split(",") if c]:
        if name not in CONFIGS:
            p.error(f"unknown configuration {name!r} (known: {', '.join(CONFIGS)})")
        r = run_config(args, name)
        if "error" not in r:
            r["mfu_vs_matmul"] = r["model_flops_per_s"] / rate
        results[name] = r
        brief = {k: r.get(k) for k in ("step_s", "tokens_per_s", "mfu", "peak_memory_gb", "error")}
        print(f"{name}: {brief}", flush=True)
    ok = {k: v for k, v in results.items() if "error" not in v}
    best = max(ok, key=lambda k: ok[k]["mfu"]) if ok else None
    counts = model_counts(shape)
    summary = {
        "bench": "gpu_step",
        "smoke": args.smoke,
        "device": device_name,
        "tokens_per_s": ok[best]["tokens_per_s"] if best else None,
        "mfu": ok[best]["mfu"] if best else None,
        "best_config": best,
        "target_mfu": 0.45,
        "peak_flops": PEAK_BF16,
        "matmul_tflops": rate / 1e12,
        "matmul_n": n,
        "model": {
            "shape": dict(zip(("hidden", "layers", "heads", "kv_heads", "mlp", "vocab"), shape)),
            "params": counts,
            "seq": args.seq,
            "rows_per_step": {"forget": args.rows, "retain": args.rows},
            "flops_per_token": flops(shape, args.seq),
        },
        "configs": {
            k: {kk: vv for kk, vv in v.items() if kk not in ("step_s_all", "losses")}
            for k, v in results.items()
        },
        "versions": versions(),
        "wall_s": time.time() - t_start,
    }
    if args.out:
        full = dict(summary, configs=results)
        (Path(args.out) / "gpu_step.json").write_text(json.dumps(full, indent=2))
    print(json.dumps(summary))


def versions() -> dict[str, str | None]:
    """Library versions (the GPU machine's differ from the project's pins)."""
    import importlib.metadata as md

    out: dict[str, str | None] = {}
    for name in ("torch", "transformers", "deepspeed"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


if __name__ == "__main__":
    main()
