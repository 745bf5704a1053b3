"""The run configuration: one dataclass per YAML section (data, model, method, train, backend,
scaling, output, eval). Loaded with ``unlearn.config.load_config(RunConfig, path, overrides)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from unlearn.config import require
from unlearn.eval.config import EvalConfig
from unlearn.methods import MethodConfig, method_config_class


@dataclass
class DataConfig:
    """Which dataset and splits a run reads."""

    path: str = ""
    forget_split: str = "forget10"  # unlearning: the split to forget
    retain_split: str | None = None  # default: the forget split's pair in dataset.json
    train_splits: list[str] = field(default_factory=lambda: ["full"])  # finetune: the training data
    max_length: int = 128
    # s3fs options for reading the dataset (default: AWS environment)
    storage_options: dict[str, Any] | None = None

    def check(self) -> None:
        """A dataset path is required; lengths positive."""
        require(bool(self.path), "path", "is required (a dataset directory, local or s3://)")
        require(self.max_length >= 8, "max_length", f"must be >= 8, got {self.max_length}")
        require(bool(self.train_splits), "train_splits", "must name at least one split")


LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass
class LoraConfig:
    """LoRA adapters (peft): only they train; the base weights stay frozen.

    Trades: optimizer state and gradients shrink to the adapters' (well under 1% of an 8B model
    at r 16), and an online reference costs no second copy of the weights (the same model with
    adapters disabled); but the update is low-rank, so forgetting may need more steps or a
    larger ``r`` than full-parameter unlearning.
    """

    r: int = 16
    alpha: float = 32.0  # scaling = alpha / r
    dropout: float = 0.0
    # Module names (or name suffixes) that get adapters; Llama / Qwen / Mistral attention and MLP
    # projections by default. A method that trains only some layers (RMU) narrows this further.
    target_modules: list[str] = field(default_factory=lambda: list(LORA_TARGETS))
    # How the run's model/ (and best_model/) are written: the adapters merged into full weights
    # (HF layout; loads with AutoModelForCausalLM) or an adapter directory (adapter_config.json +
    # adapter_model.safetensors, loaded with peft.PeftModel over the base model).
    export: Literal["merged", "adapter"] = "merged"

    def check(self) -> None:
        """Positive rank and scale, dropout in [0, 1), at least one target."""
        require(self.r >= 1, "r", f"must be >= 1, got {self.r}")
        require(self.alpha > 0, "alpha", f"must be > 0, got {self.alpha}")
        require(0 <= self.dropout < 1, "dropout", f"must be in [0, 1), got {self.dropout}")
        require(bool(self.target_modules), "target_modules", "must name at least one module")


@dataclass
class ModelConfig:
    """The model to start from (the target model for unlearning)."""

    path: str = ""
    # Weights' dtype on every device. bfloat16 halves parameter, gradient and activation memory;
    # with backend.kind=deepspeed and backend.precision=bf16 the optimizer keeps fp32 master
    # weights (and fp32 Adam states), so updates smaller than bf16's resolution are not lost.
    dtype: Literal["float32", "bfloat16"] = "float32"
    # Attention kernel: "sdpa" (torch's fused attention: no [T, T] score matrix kept for
    # backward), "flash_attention_2" (the flash-attn package on a GPU: the same memory, faster on
    # long rows), "eager" (the reference implementation: keeps the [heads, T, T] probabilities).
    attn_implementation: Literal["sdpa", "flash_attention_2", "eager"] = "sdpa"
    # LoRA adapters: absent = full-parameter training.
    lora: LoraConfig | None = None
    # The retain-only model in-training evaluation compares with (forget quality); optional.
    retain_model: str | None = None
    # s3fs options for reading the model and the retain model (default: AWS environment)
    storage_options: dict[str, Any] | None = None

    def check(self) -> None:
        """A model path is required."""
        require(bool(self.path), "path", "is required (an HF model directory, local or s3://)")


@dataclass
class TrainConfig:
    """Optimization: batch sizes are global (per optimizer step), split over workers and micro-batches."""

    epochs: int = 5
    batch_size: int = 16  # examples per optimizer step, over all workers
    micro_batch_size: int = 4  # examples per forward pass on one worker
    lr: float = 1e-5
    weight_decay: float = 0.01
    warmup_epochs: float = 1.0
    schedule: Literal["constant", "linear", "cosine"] = "linear"
    max_grad_norm: float = 1.0  # 0 disables clipping
    seed: int = 0
    log_every: int = 1
    # Recompute each decoder layer's activations in the backward pass instead of keeping them:
    # activation memory falls from every layer's intermediates to one layer input per layer (plus
    # one layer's intermediates while it is recomputed), for about one more forward pass of
    # compute per step (~33% slower steps). Losses and gradients are unchanged.
    gradient_checkpointing: bool = False
    # Stop unlearning once the forget set looks as it would to a model never trained on it,
    # instead of overshooting (over-unlearning, then collapse): "retain_equivalent" checks after
    # every in-training evaluation (eval section, every eval.every_n_epochs) that privleak (the
    # forget-vs-holdout MIA AUC against the retain model's) is >= -stop_tolerance, or, without
    # a holdout split, that forget quality (the truth-ratio KS test) is >= 0.05; "none" runs
    # every epoch.
    stop_at: Literal["none", "retain_equivalent"] = "none"
    stop_tolerance: float = 25.0  # privleak points (0 = the retain model's AUC exactly)

    def check(self) -> None:
        """Positive sizes and rates."""
        require(self.epochs >= 1, "epochs", f"must be >= 1, got {self.epochs}")
        require(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        require(
            self.micro_batch_size >= 1,
            "micro_batch_size",
            f"must be >= 1, got {self.micro_batch_size}",
        )
        require(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        require(self.weight_decay >= 0, "weight_decay", f"must be >= 0, got {self.weight_decay}")
        require(self.warmup_epochs >= 0, "warmup_epochs", f"must be >= 0, got {self.warmup_epochs}")
        require(self.max_grad_norm >= 0, "max_grad_norm", f"must be >= 0, got {self.max_grad_norm}")
        require(
            0 <= self.stop_tolerance <= 100,
            "stop_tolerance",
            f"must be in [0, 100], got {self.stop_tolerance}",
        )


@dataclass
class BackendConfig:
    """How the model is wrapped: plain torch, DDP, or a DeepSpeed engine (ZeRO 0/2/3)."""

    kind: Literal["torch", "ddp", "deepspeed"] = "deepspeed"
    zero_stage: Literal[0, 1, 2, 3] = 2
    precision: Literal["fp32", "bf16"] = "fp32"
    # ZeRO-3 keeps parameters smaller than this whole on every rank (DeepSpeed's default 1e5);
    # 0 shards everything (what tests use to really exercise sharding).
    param_persistence_threshold: int = 100_000
    # Optimizer states (fp32 master weights, Adam moments) and gradient partitions in host memory
    # ("cpu", ZeRO-Offload) or on local NVMe ("nvme", ZeRO-Infinity, at nvme_path): frees
    # 12 bytes per trained parameter (/ workers) on the GPU; costs PCIe traffic every step and an
    # optimizer step on the CPU. ZeRO 1-3.
    offload_optimizer: Literal["none", "cpu", "nvme"] = "none"
    # ZeRO-3 only: the parameter partitions themselves in host memory or on NVMe, fetched for
    # each layer's forward and backward; frees the parameters' bytes / workers on the GPU, at
    # the price of moving every parameter over PCIe twice per step.
    offload_params: Literal["none", "cpu", "nvme"] = "none"
    nvme_path: str | None = None  # a local NVMe directory, for either offload on "nvme"
    # Elements per gradient reduce-scatter bucket (None: DeepSpeed's 5e8 on GPU, 5e6 on CPU).
    # Smaller buckets lower the gradient buffer memory (bucket x 2-4 bytes, twice with
    # overlap) but mean more, smaller collectives.
    reduce_bucket_size: int | None = None
    # ZeRO-3: elements gathered ahead of use (DeepSpeed's default 5e7). Bigger hides more
    # all-gather latency behind compute; each element costs its dtype's bytes on every GPU.
    prefetch_bucket_size: int | None = None
    # ZeRO-3: most gathered (full) parameter elements alive at once (DeepSpeed's default 1e9).
    max_live_parameters: int | None = None

    def check(self) -> None:
        """Offload needs DeepSpeed (parameters: ZeRO-3), NVMe a path; bucket sizes positive."""
        offloading = self.offload_optimizer != "none" or self.offload_params != "none"
        require(
            not offloading or self.kind == "deepspeed",
            "offload_optimizer",
            f"offload needs kind=deepspeed, got kind={self.kind}",
        )
        require(
            self.offload_optimizer == "none" or self.zero_stage >= 1,
            "offload_optimizer",
            "needs zero_stage 1, 2 or 3 (ZeRO-Offload partitions the optimizer states)",
        )
        require(
            self.offload_params == "none" or self.zero_stage == 3,
            "offload_params",
            f"needs zero_stage=3 (only ZeRO-3 partitions parameters), got {self.zero_stage}",
        )
        require(
            "nvme" not in (self.offload_optimizer, self.offload_params) or bool(self.nvme_path),
            "nvme_path",
            "is required when offloading to nvme (a directory on a local NVMe drive)",
        )
        for key in ("reduce_bucket_size", "prefetch_bucket_size", "max_live_parameters"):
            value = getattr(self, key)
            require(value is None or value >= 1, key, f"must be >= 1, got {value}")


@dataclass
class ScalingConfig:
    """How many training workers, and what each one holds."""

    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    max_failures: int = 1  # worker-group restarts from the latest checkpoint

    def check(self) -> None:
        """At least one worker."""
        require(self.num_workers >= 1, "num_workers", f"must be >= 1, got {self.num_workers}")
        require(
            self.cpus_per_worker > 0, "cpus_per_worker", f"must be > 0, got {self.cpus_per_worker}"
        )


@dataclass
class OutputConfig:
    """Where the run directory goes (local or s3://)."""

    dir: str = ""
    overwrite: bool = False
    # s3fs options for the run directory: checkpoints, exported models, run.json
    storage_options: dict[str, Any] | None = None
    checkpoint_every: int = 1  # epochs
    keep_checkpoints: int = 2
    # Exported models are written as safetensors shards of at most this size plus
    # model.safetensors.index.json (one file when the model fits in one): "5GB", "500MB", ...
    max_shard_size: str = "5GB"

    def check(self) -> None:
        """An output directory is required."""
        from unlearn.models.sharded import parse_size

        require(bool(self.dir), "dir", "is required")
        try:
            parse_size(self.max_shard_size)
        except ValueError as exc:
            require(False, "max_shard_size", str(exc))
        require(self.checkpoint_every >= 1, "checkpoint_every", "must be >= 1")
        require(self.keep_checkpoints >= 1, "keep_checkpoints", "must be >= 1")


@dataclass
class RunConfig:
    """A whole fine-tuning or unlearning run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method: MethodConfig = field(
        default_factory=MethodConfig, metadata={"choose": method_config_class}
    )
    train: TrainConfig = field(default_factory=TrainConfig)
    backend: BackendConfig = field(default_factory=BackendConfig)
    scaling: ScalingConfig = field(default_factory=ScalingConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    # In-training evaluation every ``eval.every_n_epochs`` across all workers, with best-checkpoint
    # selection by ``eval.score``; absent = no evaluation during training.
    eval: EvalConfig | None = None

    def check(self) -> None:
        """Cross-section rules."""
        per_step = self.train.micro_batch_size * self.scaling.num_workers
        require(
            self.train.batch_size % per_step == 0,
            "train.batch_size",
            f"{self.train.batch_size} must be a multiple of micro_batch_size x num_workers = {per_step}",
        )
        require(
            self.backend.precision == "fp32"
            or self.backend.kind == "deepspeed"
            or self.scaling.use_gpu,
            "backend.precision",
            "bf16 needs backend.kind=deepspeed or a GPU",
        )
        if self.train.stop_at != "none":
            require(
                self.eval is not None,
                "train.stop_at",
                f"{self.train.stop_at} decides after each in-training evaluation: add an eval "
                "section",
            )
            require(
                self.model.retain_model is not None,
                "train.stop_at",
                f"{self.train.stop_at} compares with the retain-only model: set model.retain_model",
            )
        from unlearn.methods import build_method

        require(
            self.model.dtype == "float32"
            or build_method(self.method).one_shot  # no optimizer
            or (self.backend.kind == "deepspeed" and self.backend.precision == "bf16"),
            "model.dtype",
            "bfloat16 weights train with fp32 master weights only under backend.kind=deepspeed "
            f"with backend.precision=bf16 (got kind={self.backend.kind}, precision="
            f"{self.backend.precision}); without them AdamW steps the bf16 weights directly and "
            "updates below bf16's resolution are lost",
        )

    @property
    def grad_accum(self) -> int:
        """Micro-batches per optimizer step on each worker."""
        return self.train.batch_size // (self.train.micro_batch_size * self.scaling.num_workers)
