"""The trained model on a worker: built sharded under ZeRO-3, the memory levers, LoRA adapters,
the online reference, and the consolidated export streamed one parameter at a time.

- **Loading.** Under ZeRO-3 the model is created inside ``deepspeed.zero.Init`` (weight
  initialization skipped: the checkpoint overwrites every parameter), so each parameter is
  partitioned as soon as its module exists; then every rank reads *its own partition* of each
  parameter straight from the safetensors files (``sharded.Checkpoint.read``: one ``pread`` of
  exactly those bytes; no collective, no full tensor). Other backends load the whole model
  (``from_pretrained``), as they replicate it anyway. ``s3://`` models come from the node-local
  cache (``sharded.local_model_dir``: one download per node, checked against the weights hash).
- **Levers.** ``train.gradient_checkpointing`` (non-reentrant: works with frozen base weights
  and ZeRO-3), ``model.attn_implementation``, bf16 weights with fp32 master weights (DeepSpeed
  bf16), offload and bucket sizes (``backend.deepspeed_config``).
- **LoRA.** ``model.lora`` wraps the model with peft adapters after ``method.prepare_model``:
  adapters go only on target modules whose weights the method left trainable (RMU's layers),
  and only the adapters train. A method that needs an online reference gets the *same* model
  with its adapters disabled (``AdaptersDisabled``): no second copy of the weights.
- **Export.** ``export`` writes the consolidated model as sharded safetensors + index through
  ``ShardWriter``: under ZeRO-3 parameters are gathered one at a time (all ranks take part) and
  rank 0 streams each to disk, so no device and no process ever holds the whole model. LoRA runs
  export the adapters merged into full weights (W + B A * alpha / r, in fp32, rounded once) or
  as an adapter directory. Published atomically, local or ``s3://``
  (``unlearn.models.io.publish_model``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from unlearn.engine.config import RunConfig
from unlearn.errors import ConfigError, ModelError
from unlearn.models import sharded
from unlearn.models.io import MANIFEST, check_model_dir, publish_model, write_manifest

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


def is_zero3(cfg: RunConfig) -> bool:
    """True when DeepSpeed partitions the parameters (ZeRO stage 3)."""
    return cfg.backend.kind == "deepspeed" and cfg.backend.zero_stage == 3


def train_dtype(cfg: RunConfig) -> torch.dtype:
    """The dtype the weights have on the devices (DeepSpeed bf16 casts fp32 weights to bf16)."""
    if cfg.backend.kind == "deepspeed" and cfg.backend.precision == "bf16":
        return torch.bfloat16
    return getattr(torch, cfg.model.dtype)


def check_attention(cfg: RunConfig) -> None:
    """flash_attention_2 needs the flash-attn package and a GPU; refuse it early otherwise."""
    if cfg.model.attn_implementation != "flash_attention_2":
        return
    if importlib.util.find_spec("flash_attn") is None:
        raise ConfigError(
            "model.attn_implementation: flash_attention_2 needs the flash-attn package "
            "(pip install flash-attn, on a CUDA machine); use sdpa"
        )
    if not cfg.scaling.use_gpu:
        raise ConfigError(
            "model.attn_implementation: flash_attention_2 runs on GPUs only (scaling.use_gpu "
            "is false); use sdpa"
        )


def model_dir(cfg: RunConfig) -> Path:
    """The starting model on local disk (an s3:// model through the node-local cache)."""
    local = sharded.local_model_dir(cfg.model.path, cfg.model.storage_options)
    check_model_dir(local, cfg.model.path)
    return local


def load_tokenizer(local: Path) -> Any:
    """The tokenizer saved beside the model (pad = EOS when it has none)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(local))
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


class ModelSource:
    """The run's starting model, resolved but not loaded: its local directory (node cache for
    s3://), config, model class (imported) and tokenizer. ``build`` then creates the weights, so
    a memory baseline taken in between measures the weights alone."""

    def __init__(self, cfg: RunConfig):
        from transformers import AutoConfig, AutoModelForCausalLM

        check_attention(cfg)
        self.cfg = cfg
        self.local = model_dir(cfg)
        self.config = AutoConfig.from_pretrained(str(self.local))
        self.tokenizer = load_tokenizer(self.local)
        with torch.device("meta"):  # imports the architecture's modules, allocates nothing
            AutoModelForCausalLM.from_config(self.config)

    def build(self, ds_config: dict[str, Any] | None, *, partitioned: bool) -> torch.nn.Module:
        """The model with its weights; ``partitioned`` (ZeRO-3): created in ``zero.Init``, each
        rank holding and reading only its partition."""
        cfg = self.cfg
        if partitioned:
            if ds_config is None:
                raise ValueError("a partitioned model needs the DeepSpeed config")
            model = partitioned_model(
                self.local, ds_config, train_dtype(cfg), cfg.model.attn_implementation
            )
        else:
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_pretrained(
                str(self.local),
                dtype=getattr(torch, cfg.model.dtype),
                use_safetensors=True,
                attn_implementation=cfg.model.attn_implementation,
            )
        model.config.use_cache = False
        return model


@contextlib.contextmanager
def zero_init(ds_config: dict[str, Any], dtype: torch.dtype) -> Iterator[None]:
    """Modules built inside are partitioned by ZeRO-3 as they are created, weight init skipped.

    transformers' own ZeRO-3 path (``HfDeepSpeedConfig`` + ``from_pretrained``) has rank 0 read
    every shard into memory; this keeps its helpers (no weight init, RoPE buffers in their own
    dtype, no nested ``zero.Init``) and leaves reading to ``load_partitions``.
    """
    import deepspeed
    import transformers  # noqa: F401  (model classes imported before zero.Init)
    from transformers import initialization
    from transformers.integrations.deepspeed import prevent_arange_dtype_change
    from transformers.modeling_utils import set_zero3_state

    # The dtype comes from ds_config (bf16 / fp16 sections, else fp32): DeepSpeed 0.19.8's
    # ``Init(dtype=...)`` ignores the argument where fp16 is unsupported and picks bf16 on CPU
    # (``dtype or fp16 if fp16_supported() else bf16 if is_bf16_supported else fp32``: an
    # uncalled method is truthy), so fp32 runs would hold bf16 partitions. Set it after, too.
    init = deepspeed.zero.Init(config_dict_or_path=ds_config)
    init.dtype = dtype
    with (
        initialization.no_init_weights(),
        prevent_arange_dtype_change(),
        init,
        set_zero3_state(),
    ):
        yield


def partitioned_model(
    local: Path, ds_config: dict[str, Any], dtype: torch.dtype, attn: str
) -> torch.nn.Module:
    """A ZeRO-3-partitioned model of ``local``'s config holding ``local``'s weights."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(local))
    checkpoint = sharded.Checkpoint(local)  # headers first: a damaged file fails before building
    with zero_init(ds_config, dtype):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation=attn)
    model.tie_weights()
    load_partitions(model, checkpoint, str(local))
    return model


def load_partitions(model: torch.nn.Module, checkpoint: sharded.Checkpoint, where: str) -> None:
    """Fill every parameter's ZeRO-3 partition on this rank from the checkpoint's bytes."""
    import deepspeed
    import torch.distributed as dist
    from deepspeed.runtime.zero.partition_parameters import ZeroParamStatus

    params = dict(model.named_parameters())  # tied parameters once
    aliases = {n for n, _ in model.named_parameters(remove_duplicate=False)} - set(params)
    missing = [n for n in params if n not in checkpoint.entries]
    if missing:
        raise ModelError(
            f"{where}: the weights lack {len(missing)} tensors the config needs, e.g. "
            f"{missing[0]!r}: the safetensors files do not match config.json"
        )
    buffers = {n for n, _ in model.named_buffers()}
    unexpected = set(checkpoint.entries) - set(params) - aliases - buffers
    if unexpected:
        raise ModelError(
            f"{where}: the weights hold {len(unexpected)} tensors the config has no place for, "
            f"e.g. {sorted(unexpected)[0]!r}: the safetensors files do not match config.json"
        )
    for name, p in params.items():
        entry = checkpoint.entries[name]
        shape = tuple(getattr(p, "ds_shape", p.shape))
        if entry.shape != shape:
            raise ModelError(
                f"{where}: tensor {name!r} has shape {list(entry.shape)} in the weights but "
                f"{list(shape)} in config.json"
            )
        part = getattr(p, "ds_tensor", None)
        direct = (
            part is not None
            and p.ds_status == ZeroParamStatus.NOT_AVAILABLE
            and getattr(part, "final_location", None) is None  # not swapped out to NVMe
        )
        with torch.no_grad():
            if direct:
                size = part.ds_numel
                start = size * dist.get_rank(group=p.ds_process_group)
                count = max(0, min(size, p.ds_numel - start))
                if count:
                    part.data[:count].copy_(checkpoint.read(name, start, count).to(part.dtype))
                if count < size:
                    part.data[count:].zero_()  # DeepSpeed's alignment padding
            elif part is not None:  # e.g. NVMe-offloaded partitions: gather, rank 0 fills
                with deepspeed.zero.GatheredParameters([p], modifier_rank=0):
                    if dist.get_rank() == 0:
                        p.data.copy_(checkpoint.tensor(name).to(p.dtype))
            else:
                p.data.copy_(checkpoint.tensor(name).to(p.dtype))
    for name, b in model.named_buffers():  # persistent buffers (none in Llama / Qwen)
        if name in checkpoint.entries:
            with torch.no_grad():
                b.copy_(checkpoint.tensor(name).to(b.dtype))


# --------------------------------------------------------------------------------------------
# Levers and adapters.


def adapt(model: torch.nn.Module, cfg: RunConfig) -> torch.nn.Module:
    """Gradient checkpointing and LoRA adapters, as the config says (after ``prepare_model``)."""
    if cfg.train.gradient_checkpointing:
        # non-reentrant: recomputation works when only adapters (not the inputs) need grads
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.model.lora is not None:
        model = add_lora(model, cfg)
    return model


def lora_targets(model: torch.nn.Module, patterns: list[str]) -> list[str]:
    """Full names of the Linear modules matching ``patterns`` (exact names or name suffixes)
    whose weight is still trainable (a method may have frozen some: RMU's other layers)."""
    out = []
    for name, module in model.named_modules():
        if not any(name == p or name.endswith("." + p) for p in patterns):
            continue
        if not isinstance(module, torch.nn.Linear):
            raise ConfigError(
                f"model.lora.target_modules: {name} is a {type(module).__name__}; LoRA adapters "
                "go on Linear layers only"
            )
        if module.weight.requires_grad:
            out.append(name)
    return out


def add_lora(model: torch.nn.Module, cfg: RunConfig) -> torch.nn.Module:
    """The model wrapped with LoRA adapters on its trainable target modules; only they train."""
    from peft import LoraConfig, get_peft_model

    lora = cfg.model.lora
    assert lora is not None
    targets = lora_targets(model, lora.target_modules)
    if not targets:
        matched = [n for n, _ in model.named_modules() if n.split(".")[-1] in lora.target_modules]
        why = "all of them are frozen by the method" if matched else "none exists in the model"
        raise ConfigError(
            f"model.lora.target_modules: no trainable module matches {lora.target_modules} "
            f"({why}); name Linear modules such as q_proj, v_proj, down_proj"
        )
    peft_config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, peft_config)


def base_model(module: torch.nn.Module) -> torch.nn.Module:
    """The transformers model inside a peft wrapper (itself when there is none)."""
    get = getattr(module, "get_base_model", None)
    return get() if callable(get) else module


class AdaptersDisabled:
    """The online reference of a LoRA run: the trained model itself with its adapters off, in
    eval mode, without gradients. Its outputs are the starting model's (the base weights never
    change), and no second copy of the weights exists."""

    def __init__(self, module: torch.nn.Module):
        self.module = module

    def __call__(self, **inputs: Any) -> Any:
        """A forward of the base weights (ZeRO-3 gathers parameters through the module's hooks)."""
        was_training = self.module.training
        self.module.eval()
        try:
            with torch.no_grad(), self.module.disable_adapter():
                return self.module(**inputs)
        finally:
            if was_training:
                self.module.train()


def reference_model(
    cfg: RunConfig, backend: Any, device: torch.device, ds_config: dict[str, Any] | None
) -> Any:
    """The online reference a method asked for: the trained model with adapters disabled (LoRA),
    else a frozen copy of the starting model (ZeRO-3: partitioned too, in an inference-only
    DeepSpeed engine; otherwise whole on this device)."""
    if cfg.model.lora is not None:
        return AdaptersDisabled(backend.module)
    if is_zero3(cfg):
        import deepspeed

        assert ds_config is not None
        model = partitioned_model(
            model_dir(cfg), ds_config, train_dtype(cfg), cfg.model.attn_implementation
        )
        model.config.use_cache = False
        model.eval().requires_grad_(False)
        ref_config = {
            k: v for k, v in ds_config.items() if k not in ("optimizer", "gradient_clipping")
        }
        engine, *_ = deepspeed.initialize(model=model, config=ref_config, dist_init_required=False)
        engine.eval()
        return engine
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        str(model_dir(cfg)),
        dtype=train_dtype(cfg),
        use_safetensors=True,
        attn_implementation=cfg.model.attn_implementation,
    )
    model.config.use_cache = False
    return model.to(device).eval().requires_grad_(False)


# --------------------------------------------------------------------------------------------
# Export.


def _gathered(params: list[torch.nn.Parameter]) -> contextlib.AbstractContextManager:
    """Full values of ZeRO-3 parameters for the duration (a collective); a no-op otherwise."""
    if any(hasattr(p, "ds_tensor") for p in params):
        import deepspeed

        return deepspeed.zero.GatheredParameters(params, modifier_rank=None)
    return contextlib.nullcontext()


def persistent_buffers(model: torch.nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """Buffers saved with the weights (never partitioned by ZeRO-3; none in Llama / Qwen)."""
    for prefix, mod in model.named_modules():
        for name, b in mod.named_buffers(recurse=False):
            if b is not None and name not in mod._non_persistent_buffers_set:
                yield (f"{prefix}.{name}" if prefix else name), b


def _lora_layer(module: torch.nn.Module) -> bool:
    return hasattr(module, "lora_A") and hasattr(module, "base_layer")


def exported_tensors(
    module: torch.nn.Module, adapter: bool = False
) -> tuple[list[sharded.TensorSpec], Iterator[tuple[str, torch.Tensor]]]:
    """The tensors of the consolidated model, as (plan, stream of (name, CPU tensor)).

    The plan (names, dtypes, shapes) is known without gathering anything. The stream gathers one
    parameter (or one LoRA layer's three) at a time; under ZeRO-3 every rank must consume it.
    Full models: HF names, tied parameters once, LoRA merged (W + B A * scaling, in fp32).
    ``adapter``: the adapter tensors only, under peft's saved names.
    """
    model = base_model(module)
    named = dict(model.named_parameters())
    lora_layers = {name: m for name, m in model.named_modules() if _lora_layer(m)}
    specs: list[sharded.TensorSpec] = []
    work: list[tuple[str, list[torch.nn.Parameter], Any]] = []

    def shape(p: torch.nn.Parameter) -> tuple[int, ...]:
        return tuple(getattr(p, "ds_shape", p.shape))

    if adapter:
        for name, p in module.named_parameters():
            if ".lora_" in name:
                out = name.replace(".default.", ".")  # peft's saved naming drops the adapter name
                specs.append(sharded.TensorSpec(out, p.dtype, shape(p)))
                work.append((out, [p], None))
    else:
        for name, p in named.items():
            if ".lora_" in name:
                continue
            out = name.replace(".base_layer.", ".")
            owner = name.rsplit(".", 2)[0] if ".base_layer." in name else None
            layer = lora_layers.get(owner) if owner else None
            specs.append(sharded.TensorSpec(out, p.dtype, shape(p)))
            if layer is not None and name.endswith("base_layer.weight"):
                work.append(
                    (out, [p, *layer.lora_A.parameters(), *layer.lora_B.parameters()], layer)
                )
            else:
                work.append((out, [p], None))
        for name, b in persistent_buffers(model):
            specs.append(sharded.TensorSpec(name, b.dtype, tuple(b.shape)))
            work.append((name, [], b))

    def stream() -> Iterator[tuple[str, torch.Tensor]]:
        for out, params, extra in work:
            if not params:  # a buffer: never partitioned
                yield out, extra.detach().cpu()
                continue
            with _gathered(params):
                p = params[0]
                if extra is None:
                    value = p.detach().to("cpu", copy=True)
                else:  # a LoRA layer: merge its adapter into the base weight
                    layer, a = extra, extra.active_adapters[0]
                    delta = layer.lora_B[a].weight.float() @ layer.lora_A[a].weight.float()
                    if getattr(layer, "fan_in_fan_out", False):
                        delta = delta.T
                    merged = p.detach().float() + delta * layer.scaling[a]
                    value = merged.to(p.dtype).cpu()
            yield out, value

    return specs, stream()


def export(
    cfg: RunConfig,
    module: torch.nn.Module,
    tokenizer: Any,
    dest: str,
    rank: int,
    metadata: dict[str, Any] | None = None,
) -> str | None:
    """Write the trained model at ``dest`` (all ranks call it; rank 0 writes and returns the
    weights hash, the others None). Sharded safetensors + index (``output.max_shard_size``),
    config, tokenizer and manifest, published atomically; LoRA runs as ``model.lora.export``
    says (merged full weights, or an adapter directory)."""
    adapter = cfg.model.lora is not None and cfg.model.lora.export == "adapter"
    partitioned = any(hasattr(p, "ds_tensor") for p in module.parameters())
    specs, tensors = exported_tensors(module, adapter=adapter)
    if rank != 0:
        if partitioned:
            for _ in tensors:  # take part in every gather
                pass
        return None
    meta = {
        "method": cfg.method.name,
        "base_model": cfg.model.path,
        "dataset": cfg.data.path,
        **(metadata or {}),
    }
    if cfg.model.lora is not None:
        meta["lora"] = {
            "r": cfg.model.lora.r,
            "alpha": cfg.model.lora.alpha,
            "target_modules": list(cfg.model.lora.target_modules),
            "export": cfg.model.lora.export,
        }
    limit = sharded.parse_size(cfg.output.max_shard_size)
    commit = (ADAPTER_CONFIG, MANIFEST) if adapter else ("config.json", MANIFEST)
    with publish_model(
        dest, cfg.output.storage_options, overwrite=True, commit_last=commit
    ) as staging:
        writer = sharded.ShardWriter(
            staging,
            specs,
            10**15 if adapter else limit,
            single_name=ADAPTER_WEIGHTS if adapter else sharded.SINGLE,
        )
        try:
            for name, t in tensors:
                writer.add(name, t)
            digest = writer.close()
        except BaseException:
            writer.abort()
            raise
        model = base_model(module)
        if adapter:
            peft_config = module.peft_config[module.active_adapter]
            peft_config.base_model_name_or_path = cfg.model.path
            peft_config.save_pretrained(str(staging))
        else:
            config = model.config
            saved_dtype = getattr(config, "dtype", None)
            config.dtype = specs[0].dtype
            config.use_cache = True  # a served model caches keys and values
            try:
                config.save_pretrained(str(staging))
            finally:
                config.dtype = saved_dtype
                config.use_cache = False
            generation = getattr(model, "generation_config", None)
            if generation is not None:
                generation.save_pretrained(str(staging))
        if tokenizer is not None:
            tokenizer.save_pretrained(str(staging))
        write_manifest(staging, digest, meta)
    return digest


def adapter_info(path: str | Path) -> dict[str, Any] | None:
    """The adapter_config.json of an adapter directory (None for full models)."""
    p = Path(path) / ADAPTER_CONFIG
    return json.loads(p.read_text()) if p.is_file() else None
