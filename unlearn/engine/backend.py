"""One interface over three ways to train: a plain torch model, DDP, or a DeepSpeed engine.

The loop calls ``forward`` / ``backward`` / ``step`` and never branches on the backend. Gradient
accumulation, clipping, the warmup + decay schedule and checkpoint state live here.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from unlearn.engine.config import RunConfig


def lr_lambda(total_steps: int, warmup_steps: int, schedule: str) -> Any:
    """LR multiplier per optimizer step: linear warmup, then constant / linear / cosine decay to 0."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        if schedule == "constant":
            return 1.0
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        if schedule == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def keep_freed_cpu_memory() -> bool:
    """Have glibc hand out large CPU tensors from its heap and keep freed memory for reuse.

    glibc hands blocks above its mmap threshold (dynamic, at most 32 MiB by default) straight to
    mmap and unmaps them on free, so a buffer of that size allocated anew every step is
    page-faulted in afresh every step (about 11k minor faults per 44 MB). DeepSpeed's ZeRO
    optimizer allocates several model-sized flat fp32 buffers every step (gradient partition,
    flattened gradients, AdamW temporaries): on the 11M-parameter "small" model a ZeRO-2 step on
    CPU took ~60k minor faults, against ~4 with this setting and ``CPU_REDUCE_BUCKET``
    (bench/engine_overhead.py; times in docs/benchmarks.md). Raising the mmap and trim
    thresholds makes glibc reuse freed heap memory, as torch's caching allocator does on GPU;
    the cost is that the process keeps its peak heap resident. Process-wide; glibc only
    (returns False elsewhere).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's <malloc.h>
    limit = 2**31 - 1  # mallopt takes a C int
    return bool(mallopt(m_mmap_threshold, limit)) and bool(mallopt(m_trim_threshold, limit))


def make_optimizer(model: torch.nn.Module, cfg: RunConfig) -> torch.optim.Optimizer:
    """AdamW over trainable parameters; no weight decay on biases and norms (1-D tensors)."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.train.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return torch.optim.AdamW(groups, lr=cfg.train.lr, betas=(0.9, 0.999), eps=1e-8)


CPU_REDUCE_BUCKET = 5_000_000  # elements; see deepspeed_config


def offload_block(device: str, cfg: RunConfig) -> dict[str, Any]:
    """A DeepSpeed ``offload_optimizer`` / ``offload_param`` section for "cpu" or "nvme"."""
    block: dict[str, Any] = {"device": device, "pin_memory": cfg.scaling.use_gpu}
    if device == "nvme":
        block["nvme_path"] = cfg.backend.nvme_path
    return block


def deepspeed_config(cfg: RunConfig) -> dict[str, Any]:
    """A concrete DeepSpeed config (no "auto": only the HF Trainer resolves those)."""
    b = cfg.backend
    stage = b.zero_stage
    zero: dict[str, Any] = {"stage": stage}
    if b.reduce_bucket_size is not None:
        zero["reduce_bucket_size"] = b.reduce_bucket_size
    elif not cfg.scaling.use_gpu:
        # DeepSpeed allocates its gradient bucket (default 5e8 elements: 2 GB in fp32) afresh
        # every step. The training shell runs the loop in a thread, whose glibc arena grows in heaps of
        # at most 64 MB: a bigger block is mmapped and page-faulted in again each step (11k
        # faults/step on the "small" model even with keep_freed_cpu_memory). 5e6 elements
        # (20 MB in fp32) fits; GPU runs keep DeepSpeed's default.
        zero["reduce_bucket_size"] = CPU_REDUCE_BUCKET
    if b.offload_optimizer != "none":
        zero["offload_optimizer"] = offload_block(b.offload_optimizer, cfg)
    if stage == 3:
        zero.update(
            stage3_param_persistence_threshold=b.param_persistence_threshold,
            stage3_gather_16bit_weights_on_model_save=True,
        )
        if b.prefetch_bucket_size is not None:
            zero["stage3_prefetch_bucket_size"] = b.prefetch_bucket_size
        if b.max_live_parameters is not None:
            zero["stage3_max_live_parameters"] = b.max_live_parameters
        if b.offload_params != "none":
            zero["offload_param"] = offload_block(b.offload_params, cfg)
    out = {
        "train_batch_size": cfg.train.batch_size,
        "train_micro_batch_size_per_gpu": cfg.train.micro_batch_size,
        "gradient_accumulation_steps": cfg.grad_accum,
        "gradient_clipping": cfg.train.max_grad_norm,
        "zero_optimization": zero,
        "bf16": {"enabled": b.precision == "bf16"},
        "zero_allow_untested_optimizer": True,
        # the client AdamW also steps offloaded (CPU) optimizer states
        "zero_force_ds_cpu_optimizer": False,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    if "nvme" in (b.offload_optimizer, b.offload_params):
        out["aio"] = {"block_size": 1048576, "queue_depth": 8, "single_submit": False}
    return out


class TorchBackend:
    """Plain torch (one process) or DDP: manual accumulation with ``no_sync``, clipping, AdamW."""

    def __init__(
        self,
        model: torch.nn.Module,
        cfg: RunConfig,
        total_steps: int,
        warmup_steps: int,
        device: torch.device,
        ddp: bool,
    ):
        self.module = model.to(device)
        self.cfg = cfg
        self.accum = cfg.grad_accum
        if ddp:
            from torch.nn.parallel import DistributedDataParallel

            ids = [device.index] if device.type == "cuda" else None
            self.model: torch.nn.Module = DistributedDataParallel(self.module, device_ids=ids)
        else:
            self.model = self.module
        self.optimizer = make_optimizer(self.module, cfg)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(total_steps, warmup_steps, cfg.train.schedule)
        )
        self._micro = 0
        self.grad_norm = 0.0

    def forward(self, **inputs: Any) -> Any:
        """Run the (wrapped) model; DDP skips gradient sync until the last micro-batch."""
        last = (self._micro + 1) % self.accum == 0
        if isinstance(self.model, torch.nn.parallel.DistributedDataParallel) and not last:
            with self.model.no_sync():
                return self.model(**inputs)
        return self.model(**inputs)

    def backward(self, loss: torch.Tensor) -> None:
        """Accumulate gradients of loss / accumulation steps."""
        (loss / self.accum).backward()
        self._micro += 1

    def step(self) -> None:
        """Clip, step the optimizer and the schedule, clear gradients."""
        params = [p for p in self.module.parameters() if p.requires_grad]
        if self.cfg.train.max_grad_norm > 0:
            self.grad_norm = float(
                torch.nn.utils.clip_grad_norm_(params, self.cfg.train.max_grad_norm)
            )
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def lr(self) -> float:
        """The current learning rate."""
        return self.scheduler.get_last_lr()[0]

    def save(self, directory: Path, rank: int) -> None:
        """Rank 0 writes weights (safetensors) and optimizer/schedule state."""
        if rank != 0:
            return
        from safetensors.torch import save_model

        save_model(self.module, str(directory / "model.safetensors"))
        torch.save(
            {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()},
            directory / "optimizer.pt",
        )

    def load(self, directory: Path) -> None:
        """Restore weights and optimizer/schedule state saved by ``save``."""
        from safetensors.torch import load_model

        load_model(self.module, str(directory / "model.safetensors"))
        state = torch.load(directory / "optimizer.pt", weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])

    def export_state_dict(self) -> dict[str, torch.Tensor] | None:
        """Full weights for the consolidated model (on every rank; rank 0 writes them)."""
        return {k: v.detach().cpu() for k, v in self.module.state_dict().items()}


class DeepSpeedBackend:
    """A DeepSpeed engine (ZeRO 0/2/3, fp32 or bf16) with a client AdamW and our LR schedule."""

    def __init__(
        self,
        model: torch.nn.Module,
        cfg: RunConfig,
        total_steps: int,
        warmup_steps: int,
        device: torch.device,
    ):
        import deepspeed

        self.cfg = cfg
        optimizer = make_optimizer(model, cfg)
        factor = lr_lambda(total_steps, warmup_steps, cfg.train.schedule)
        self.model, self.optimizer, _, self.scheduler = deepspeed.initialize(
            model=model,
            optimizer=optimizer,
            lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, factor),
            config=deepspeed_config(cfg),
            dist_init_required=False,
        )
        self.module = self.model.module
        self.grad_norm = 0.0
        # LoRA: checkpoints hold the adapters and their optimizer state, not the frozen base
        self.frozen_base = cfg.model.lora is not None

    def forward(self, **inputs: Any) -> Any:
        """Run the engine's forward (ZeRO-3 gathers parameters here)."""
        return self.model(**inputs)

    def backward(self, loss: torch.Tensor) -> None:
        """Backward then ``engine.step()``: DeepSpeed scales by 1 / accumulation steps and only
        applies the optimizer at the accumulation boundary."""
        self.model.backward(loss)
        self.model.step()

    def step(self) -> None:
        """The optimizer already stepped inside the last ``backward``; record the gradient norm."""
        norm = self.model.get_global_grad_norm()
        self.grad_norm = float(norm) if norm is not None else 0.0

    def lr(self) -> float:
        """The current learning rate."""
        return self.model.get_lr()[0]

    def save(self, directory: Path, rank: int) -> None:
        """Every rank writes its shard of parameters and optimizer state."""
        self.model.save_checkpoint(
            str(directory), tag="state", exclude_frozen_parameters=self.frozen_base
        )

    def load(self, directory: Path) -> None:
        """Restore the engine, optimizer and schedule state written by ``save``."""
        path, _ = self.model.load_checkpoint(
            str(directory), tag="state", load_module_strict=not self.frozen_base
        )
        if path is None:
            raise RuntimeError(f"DeepSpeed found no checkpoint in {directory}")

    def export_state_dict(self) -> dict[str, torch.Tensor] | None:
        """Full weights gathered from ZeRO-3 shards (a collective: every rank must call it)."""
        if self.cfg.backend.zero_stage != 3:
            return {k: v.detach().cpu() for k, v in self.module.state_dict().items()}
        import deepspeed

        params = list(self.module.parameters())
        with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
            return {k: v.detach().cpu().clone() for k, v in self.module.state_dict().items()}


def make_backend(
    model: torch.nn.Module,
    cfg: RunConfig,
    total_steps: int,
    warmup_steps: int,
    device: torch.device,
    world_size: int,
) -> TorchBackend | DeepSpeedBackend:
    """The backend the config names."""
    if device.type == "cpu":
        keep_freed_cpu_memory()  # per-step model-sized buffers: see the function
    if cfg.backend.kind == "deepspeed":
        return DeepSpeedBackend(model, cfg, total_steps, warmup_steps, device)
    return TorchBackend(
        model,
        cfg,
        total_steps,
        warmup_steps,
        device,
        ddp=cfg.backend.kind == "ddp" and world_size > 1,
    )
