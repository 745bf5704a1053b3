"""A servable Hugging Face model from any epoch's training checkpoint (not only the last one).

A run keeps a checkpoint per epoch (``checkpoints/``, in the backend's own layout: safetensors +
optimizer state for torch / DDP, DeepSpeed's engine checkpoint for ZeRO 0-3). ``export_checkpoint``
loads the run's starting model, puts that checkpoint's weights into it and writes a consolidated
HF directory (safetensors + tokenizer, published atomically, local or s3://), as the run's own
``model/`` export does.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch

from unlearn import storage
from unlearn.engine.config import RunConfig
from unlearn.engine.loop import export_model
from unlearn.errors import DataError
from unlearn.models import load_model


def checkpoint_state_dict(cfg: RunConfig, directory: Path) -> dict[str, torch.Tensor] | None:
    """Full weights from a local checkpoint directory (None: the torch layout, loaded in place)."""
    if cfg.backend.kind != "deepspeed":
        return None
    if cfg.backend.zero_stage == 0:
        files = sorted((directory / "state").glob("mp_rank_*_model_states.pt"))
        if not files:
            raise DataError(f"checkpoint {directory} holds no DeepSpeed model states")
        return torch.load(files[0], map_location="cpu", weights_only=False)["module"]
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    return get_fp32_state_dict_from_zero_checkpoint(str(directory), tag="state")


def export_checkpoint(
    cfg: RunConfig, checkpoint: str, dest: str, storage_options: dict[str, Any] | None = None
) -> str:
    """Write the checkpoint's weights as an HF model at ``dest``; returns the weights hash."""
    opts = storage_options if storage_options is not None else cfg.output.storage_options
    if not storage.exists(checkpoint, opts):
        raise DataError(f"checkpoint {checkpoint} does not exist (pruned by keep_checkpoints?)")
    with tempfile.TemporaryDirectory(prefix="unlearn-export-") as tmp:
        local = Path(checkpoint)
        if storage.is_remote(checkpoint):
            fs, inner = storage.filesystem(checkpoint, opts)
            local = Path(tmp) / "ckpt"
            fs.get(inner.rstrip("/") + "/", str(local), recursive=True)
        model, tokenizer = load_model(
            cfg.model.path, dtype=cfg.model.dtype, storage_options=cfg.model.storage_options
        )
        state = checkpoint_state_dict(cfg, local)
        if state is None:
            from safetensors.torch import load_model as load_weights

            load_weights(model, str(local / "model.safetensors"))
        else:
            missing, unexpected = model.load_state_dict(state, strict=False)
            real_missing = [k for k in missing if k != "lm_head.weight"]  # tied embeddings
            if real_missing or unexpected:
                raise DataError(
                    f"checkpoint {checkpoint} does not fit {cfg.model.path}: missing "
                    f"{real_missing[:3]}, unexpected {list(unexpected)[:3]}"
                )
            model.tie_weights()
        return export_model(cfg, model, tokenizer, None, dest)
