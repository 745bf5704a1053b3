"""The memory planner: will this run fit on these GPUs, and which lever to pull first.

``plan(cfg, world_size, gpu_memory_bytes)`` estimates the bytes one GPU holds at the peak of a
training step, per part (the ``per_gpu_bytes`` keys are an interface):

- ``parameters``: the weights in the training dtype (``w`` = 2 bytes bf16, 4 fp32). ZeRO-3: each
  rank's partition (parameters under ``param_persistence_threshold`` elements stay whole) plus
  the working set of gathered full parameters (two decoder layers: the one computing and the one
  prefetched); LoRA adapters on top. ``offload_params``: only the working set stays.
- ``gradients``: trained parameters x ``w``; ZeRO-2/3 keep only their partition plus one reduce
  bucket (``reduce_bucket_size`` elements). ``offload_optimizer`` moves the partition to host.
- ``optimizer``: AdamW's two fp32 moments (8 B per trained parameter) plus fp32 master weights
  (4 B) where DeepSpeed ZeRO 1-3 or bf16 weights keep them; ZeRO 1-3 partition them over the
  ranks; ``offload_optimizer`` moves them to host (0 here).
- ``reference``: the online reference model of a method that needs one (a second copy of the
  weights, partitioned under ZeRO-3), 0 under LoRA (the same model with adapters disabled), plus
  the cached reference log-probs (4 B per example of the cached streams).
- ``activations``: tensors autograd keeps for one micro-batch's joint forward over every stream
  of the method (``micro_batch_size x streams x max_length`` tokens). Per decoder layer (Llama /
  Qwen / Mistral, counted from the saved tensors of each op): two RMSNorms (3h each), the query
  and the attention output and o_proj's input (3h), keys and values (2 kv), the SwiGLU MLP (4 I),
  ``w`` bytes each; eager attention adds the [heads, T, T] scores and probabilities. Gradient
  checkpointing keeps one layer input per layer plus one layer recomputed. On top: the logits
  (``w``) and their fp32 log-softmax (4 B) per vocabulary entry, and the backward's transient
  gradient of the logits and of one layer.

The planner reads only the model's ``config.json`` (a model directory, the file itself, local or
``s3://``): the parameter shapes come from the architecture built on the meta device (no
memory, no weights), so a 70B model plans on a laptop. ``bench/memory_plan.py`` checks the
estimate against measured peaks (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import torch

from unlearn import storage
from unlearn.engine.config import RunConfig
from unlearn.errors import ConfigError, ModelError

PARTS = ("parameters", "gradients", "optimizer", "reference", "activations")
GPU_REDUCE_BUCKET = 500_000_000  # DeepSpeed's default reduce_bucket_size (elements)
CPU_REDUCE_BUCKET = 5_000_000  # engine/backend.py's CPU default
HEADROOM = 0.9  # usable share of a GPU's memory (CUDA context, allocator fragmentation)


@dataclass
class ModelShape:
    """What the planner needs of a model: parameter counts and the decoder's sizes."""

    n_params: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_dim: int
    vocab: int
    largest_layer: int  # parameters of one decoder layer
    param_numels: list[int]
    lora_params: int  # adapter parameters under the run's model.lora (0 without)
    trainable: int  # parameters the method trains (LoRA: the adapters)


def read_model_config(path: str, storage_options: dict[str, Any] | None = None) -> Any:
    """The transformers config of a model directory or of a ``config.json`` file (local/s3)."""
    from transformers import AutoConfig

    file = path if str(path).endswith(".json") else storage.join(path, "config.json")
    if not storage.exists(file, storage_options):
        raise ModelError(f"{file} does not exist: the planner needs the model's HF config.json")
    try:
        raw = json.loads(storage.read_bytes(file, storage_options))
    except ValueError as exc:
        raise ModelError(f"{file} is not JSON: {exc}") from None
    model_type = raw.pop("model_type", None)
    if model_type is None:
        raise ModelError(f"{file} has no model_type: not a Hugging Face model config")
    try:
        return AutoConfig.for_model(model_type, **raw)
    except ValueError as exc:
        raise ModelError(f"{file}: {exc}") from None


def model_shape(cfg: RunConfig) -> ModelShape:
    """The run's model on the meta device: exact parameter counts, the method's trained share."""
    from transformers import AutoModelForCausalLM

    from unlearn.engine.modeling import lora_targets
    from unlearn.methods import build_method

    config = read_model_config(cfg.model.path, cfg.model.storage_options)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    method = build_method(cfg.method)
    method.prepare_model(model)  # e.g. RMU freezes all but its layers
    params = list(model.parameters())  # tied once
    n = sum(p.numel() for p in params)
    layers = getattr(getattr(model, "model", model), "layers", None)
    if layers is None or len(layers) == 0:
        raise ModelError(f"{cfg.model.path}: no decoder layers found (model.layers)")
    largest = max(sum(p.numel() for p in layer.parameters()) for layer in layers)
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    lora = 0
    if cfg.model.lora is not None:
        names = lora_targets(model, cfg.model.lora.target_modules)
        if not names:
            raise ConfigError(
                f"model.lora.target_modules: no trainable module matches "
                f"{cfg.model.lora.target_modules}"
            )
        for name in names:
            m = model.get_submodule(name)
            lora += cfg.model.lora.r * (m.in_features + m.out_features)
        trainable = lora
    else:
        trainable = sum(p.numel() for p in params if p.requires_grad)
    return ModelShape(
        n_params=n,
        hidden=config.hidden_size,
        intermediate=config.intermediate_size,
        layers=len(layers),
        heads=heads,
        kv_dim=kv_heads * head_dim,
        vocab=config.vocab_size,
        largest_layer=largest,
        param_numels=[p.numel() for p in params],
        lora_params=lora,
        trainable=trainable,
    )


def weight_bytes(cfg: RunConfig) -> int:
    """Bytes per weight element on the devices (bf16 under DeepSpeed bf16 or model.dtype)."""
    bf16 = cfg.model.dtype == "bfloat16" or (
        cfg.backend.kind == "deepspeed" and cfg.backend.precision == "bf16"
    )
    return 2 if bf16 else 4


def zero_stage(cfg: RunConfig) -> int:
    """The ZeRO stage (0 for the torch and DDP backends)."""
    return cfg.backend.zero_stage if cfg.backend.kind == "deepspeed" else 0


def activation_bytes(cfg: RunConfig, shape: ModelShape, streams: int, checkpointing: bool) -> int:
    """Bytes autograd keeps for one micro-batch (module docstring), at the step's peak."""
    w = weight_bytes(cfg)
    tokens = cfg.train.micro_batch_size * streams * cfg.data.max_length
    h, kv, inter = shape.hidden, shape.kv_dim, shape.intermediate
    per_layer = tokens * w * (9 * h + 2 * kv + 4 * inter)
    if cfg.model.attn_implementation == "eager":
        rows = cfg.train.micro_batch_size * streams
        per_layer += rows * shape.heads * cfg.data.max_length**2 * w * 2
    if checkpointing:
        layers = tokens * h * w * shape.layers + per_layer
    else:
        layers = per_layer * shape.layers
    head = tokens * w * 3 * h + tokens * shape.vocab * (w + 4)  # final norm, logits, log-softmax
    transient = tokens * shape.vocab * 4 + tokens * w * 2 * max(h, inter)  # backward's grads
    return layers + head + transient


def per_gpu_bytes(
    cfg: RunConfig, world_size: int, shape: ModelShape | None = None
) -> dict[str, int]:
    """Estimated bytes per GPU of each part and their total (module docstring)."""
    from unlearn.methods import build_method

    shape = shape or model_shape(cfg)
    method = build_method(cfg.method)
    b = cfg.backend
    w = weight_bytes(cfg)
    stage = zero_stage(cfg)
    ws = max(1, world_size)
    t = shape.trainable
    working = 2 * shape.largest_layer * w  # ZeRO-3: gathered full parameters in flight

    if stage == 3:
        threshold = b.param_persistence_threshold
        part = sum(n if n < threshold else math.ceil(n / ws) for n in shape.param_numels) * w
        parameters = working + (0 if b.offload_params != "none" else part)
    else:
        parameters = shape.n_params * w
    parameters += shape.lora_params * w

    offload_opt = b.offload_optimizer != "none" and stage >= 1
    bucket = b.reduce_bucket_size or (
        GPU_REDUCE_BUCKET if cfg.scaling.use_gpu else CPU_REDUCE_BUCKET
    )
    if stage >= 2:
        gradients = min(bucket, t) * w + (0 if offload_opt else math.ceil(t / ws) * w)
    else:
        gradients = t * w

    master = stage >= 1 or w == 2
    optimizer = t * (8 + (4 if master else 0))
    if stage >= 1:
        optimizer = math.ceil(optimizer / ws)
    if offload_opt:
        optimizer = 0

    reference = 0
    if method.needs_reference_model and cfg.model.lora is None:
        reference = (
            sum(math.ceil(n / ws) for n in shape.param_numels) * w + working
            if stage == 3
            else shape.n_params * w
        )
    activations = activation_bytes(
        cfg, shape, len(method.streams), cfg.train.gradient_checkpointing
    )
    if method.one_shot:
        gradients = optimizer = 0
    out = {
        "parameters": int(parameters),
        "gradients": int(gradients),
        "optimizer": int(optimizer),
        "reference": int(reference),
        "activations": int(activations),
    }
    out["total"] = sum(out.values())
    return out


LEVERS = (
    ("train.gradient_checkpointing=true", "activations"),
    ("backend.zero_stage=3", "parameters"),
    ("model.lora (adapters only)", "optimizer"),
    ("backend.offload_optimizer=cpu", "optimizer"),
    ("backend.offload_params=cpu", "parameters"),
    ("train.micro_batch_size (smaller; more accumulation)", "activations"),
)


def candidate_configs(cfg: RunConfig) -> list[tuple[str, RunConfig]]:
    """The run with one lever pulled each (those not pulled already)."""
    import copy

    from unlearn.engine.config import LoraConfig

    out = []

    def variant(name: str, edit: Any) -> None:
        c = copy.deepcopy(cfg)
        if edit(c) is not False:
            out.append((name, c))

    def ckpt(c: RunConfig) -> bool:
        if c.train.gradient_checkpointing:
            return False
        c.train.gradient_checkpointing = True
        return True

    def zero3(c: RunConfig) -> bool:
        if zero_stage(c) == 3:
            return False
        c.backend.kind, c.backend.zero_stage = "deepspeed", 3
        return True

    def lora(c: RunConfig) -> bool:
        if c.model.lora is not None:
            return False
        c.model.lora = LoraConfig()
        return True

    def offload_opt(c: RunConfig) -> bool:
        if c.backend.offload_optimizer != "none":
            return False
        if zero_stage(c) == 0:
            c.backend.kind, c.backend.zero_stage = "deepspeed", 2
        c.backend.offload_optimizer = "cpu"
        return True

    def offload_params(c: RunConfig) -> bool:
        if c.backend.offload_params != "none":
            return False
        c.backend.kind, c.backend.zero_stage = "deepspeed", 3
        c.backend.offload_params = "cpu"
        c.backend.offload_optimizer = "cpu"
        return True

    def smaller_batch(c: RunConfig) -> bool:
        if c.train.micro_batch_size == 1:
            return False
        c.train.micro_batch_size = 1
        return True

    for name, edit in zip(
        [n for n, _ in LEVERS], (ckpt, zero3, lora, offload_opt, offload_params, smaller_batch)
    ):
        variant(name, edit)
    return out


def plan(cfg: RunConfig, world_size: int, gpu_memory_bytes: int | None) -> dict[str, Any]:
    """The planner's answer: per-GPU bytes, whether they fit, and the lever to pull first."""
    shape = model_shape(cfg)
    est = per_gpu_bytes(cfg, world_size, shape)
    usable = int(gpu_memory_bytes * HEADROOM) if gpu_memory_bytes else None
    fits = usable is None or est["total"] <= usable
    biggest = max(PARTS, key=lambda k: est[k])
    levers = []
    for name, variant in candidate_configs(cfg):
        other = per_gpu_bytes(variant, world_size, model_shape(variant))
        levers.append(
            {
                "lever": name,
                "total": other["total"],
                "saves": est["total"] - other["total"],
                "fits": usable is None or other["total"] <= usable,
            }
        )
    levers.sort(key=lambda x: -x["saves"])
    first = None
    if not fits:
        fitting = [x for x in levers if x["fits"]]
        first = (fitting or levers)[0]["lever"] if levers else None
    return {
        "model": cfg.model.path,
        "method": cfg.method.name,
        "parameters": shape.n_params,
        "trainable_parameters": shape.trainable,
        "world_size": world_size,
        "zero_stage": zero_stage(cfg),
        "weight_bytes": weight_bytes(cfg),
        "gradient_checkpointing": cfg.train.gradient_checkpointing,
        "lora": cfg.model.lora is not None,
        "tokens_per_micro_batch": cfg.train.micro_batch_size
        * len(_streams(cfg))
        * cfg.data.max_length,
        "per_gpu_bytes": est,
        "gpu_memory_bytes": gpu_memory_bytes,
        "usable_bytes": usable,
        "fits": fits,
        "largest_part": biggest,
        "first_lever": first,
        "levers": levers,
    }


def _streams(cfg: RunConfig) -> tuple[Any, ...]:
    from unlearn.methods import build_method

    return tuple(build_method(cfg.method).streams)


def gib(n: int | None) -> str:
    """Bytes as GiB with two decimals."""
    return "-" if n is None else f"{n / 2**30:.2f} GiB"


def render(result: dict[str, Any]) -> str:
    """The planner's answer for people: one line per part, the verdict and the first lever."""
    lines = [
        f"model {result['model']}: {result['parameters'] / 1e9:.2f}B parameters, "
        f"{result['trainable_parameters'] / 1e6:.1f}M trained ({result['method']}), "
        f"{result['world_size']} GPUs, ZeRO-{result['zero_stage']}, "
        f"{'bf16' if result['weight_bytes'] == 2 else 'fp32'} weights, "
        f"checkpointing {'on' if result['gradient_checkpointing'] else 'off'}, "
        f"LoRA {'on' if result['lora'] else 'off'}",
        "per GPU:",
    ]
    for key in (*PARTS, "total"):
        lines.append(f"  {key:<12} {gib(result['per_gpu_bytes'][key]):>12}")
    if result["usable_bytes"] is None:
        lines.append("fits: no GPU memory given (--gpu-memory-gb)")
    else:
        verdict = "fits" if result["fits"] else "does NOT fit"
        lines.append(
            f"{verdict} in {gib(result['usable_bytes'])} usable of "
            f"{gib(result['gpu_memory_bytes'])} per GPU"
        )
    if result["first_lever"]:
        lines.append(f"pull first: {result['first_lever']}")
    for lever in result["levers"]:
        lines.append(
            f"  {lever['lever']:<52} -> {gib(lever['total']):>12}"
            f"{'  fits' if lever['fits'] else ''}"
        )
    return "\n".join(lines)
