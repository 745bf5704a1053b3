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


@dataclass
class ModelConfig:
    """The model to start from (the target model for unlearning)."""

    path: str = ""
    dtype: Literal["float32", "bfloat16"] = "float32"
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


@dataclass
class BackendConfig:
    """How the model is wrapped: plain torch, DDP, or a DeepSpeed engine (ZeRO 0/2/3)."""

    kind: Literal["torch", "ddp", "deepspeed"] = "deepspeed"
    zero_stage: Literal[0, 1, 2, 3] = 2
    precision: Literal["fp32", "bf16"] = "fp32"
    # ZeRO-3 keeps parameters smaller than this whole on every rank (DeepSpeed's default 1e5);
    # 0 shards everything (what tests use to really exercise sharding).
    param_persistence_threshold: int = 100_000


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

    def check(self) -> None:
        """An output directory is required."""
        require(bool(self.dir), "dir", "is required")
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

    @property
    def grad_accum(self) -> int:
        """Micro-batches per optimizer step on each worker."""
        return self.train.batch_size // (self.train.micro_batch_size * self.scaling.num_workers)
