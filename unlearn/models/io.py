"""Load and save Hugging Face causal LMs (safetensors only) from a local directory or S3."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from unlearn import storage
from unlearn.errors import ModelError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
MANIFEST = "unlearn_model.json"


def _local_copy(path: str | os.PathLike, storage_options: dict[str, Any] | None) -> Path:
    if not storage.is_remote(path):
        local = Path(path)
        if not local.is_dir():
            raise ModelError(f"model directory {local} does not exist")
        return local
    if not storage.exists(storage.join(str(path), "config.json"), storage_options):
        raise ModelError(f"{path} holds no config.json: not a (complete) model directory")
    cache = Path(tempfile.mkdtemp(prefix="unlearn-model-"))
    return storage.download_dir(path, cache, storage_options)


def check_model_dir(local: Path, where: str) -> None:
    """Refuse directories without config.json or without safetensors weights (pickle is unsafe)."""
    if not (local / "config.json").is_file():
        raise ModelError(f"{where} holds no config.json: not a Hugging Face model directory")
    names = [p.name for p in local.iterdir()]
    if not any(n.endswith(".safetensors") for n in names):
        pickles = [n for n in names if n.endswith(PICKLE_SUFFIXES)]
        if pickles:
            raise ModelError(
                f"{where} holds only pickle weights ({', '.join(sorted(pickles))}); they can run "
                "arbitrary code when loaded. Convert them to safetensors first "
                "(model.save_pretrained(dir, safe_serialization=True) in a trusted environment)"
            )
        raise ModelError(f"{where} holds no *.safetensors weights")


def load_tokenizer(path: str | os.PathLike, storage_options: dict[str, Any] | None = None) -> Any:
    """Load the tokenizer saved beside a model (local or S3)."""
    from transformers import AutoTokenizer

    local = _local_copy(path, storage_options)
    tok = AutoTokenizer.from_pretrained(str(local))
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(
    path: str | os.PathLike,
    *,
    dtype: str | None = None,
    storage_options: dict[str, Any] | None = None,
    with_tokenizer: bool = True,
) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` from a local directory or ``s3://`` prefix; safetensors only."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    local = _local_copy(path, storage_options)
    check_model_dir(local, str(path))
    torch_dtype = getattr(torch, dtype) if dtype else None
    model = AutoModelForCausalLM.from_pretrained(
        str(local), dtype=torch_dtype, use_safetensors=True
    )
    tokenizer = None
    if with_tokenizer:
        tokenizer = AutoTokenizer.from_pretrained(str(local))
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def weights_hash(directory: str | os.PathLike) -> str:
    """SHA-256 over a local model directory's safetensors files (the model's identity)."""
    h = hashlib.sha256()
    for p in sorted(Path(directory).glob("*.safetensors")):
        h.update(p.name.encode())
        with p.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def state_dict_hash(model: Any) -> str:
    """SHA-256 over a loaded model's parameters and buffers (names, dtypes, shapes, bytes)."""
    import torch

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def model_hash(
    path: str | os.PathLike, storage_options: dict[str, Any] | None = None
) -> str | None:
    """A model directory's identity: the manifest's weights hash, else the local safetensors' hash."""
    found = model_identity(path, storage_options)
    if found is None and not storage.is_remote(path) and Path(path).is_dir():
        found = weights_hash(path)
    return found


def save_model(
    model: Any,
    tokenizer: Any,
    path: str | os.PathLike,
    *,
    storage_options: dict[str, Any] | None = None,
    overwrite: bool = False,
    metadata: dict[str, Any] | None = None,
    state_dict: dict[str, Any] | None = None,
) -> str:
    """Save model + tokenizer in HF layout (safetensors) at ``path``; returns the weights hash.

    Written to a staging directory first: a local target appears whole by rename; on S3 the
    ``config.json`` and manifest are uploaded last, so a partial upload is never loadable.
    ``state_dict`` overrides the model's own (e.g. weights gathered from ZeRO-3 shards).
    """
    with storage.publish_dir(
        path, storage_options, overwrite=overwrite, commit_last=("config.json", MANIFEST)
    ) as staging:
        model.save_pretrained(str(staging), safe_serialization=True, state_dict=state_dict)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(staging))
        digest = weights_hash(staging)
        manifest = {"weights_sha256": digest, **(metadata or {})}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return digest


def model_identity(
    path: str | os.PathLike, storage_options: dict[str, Any] | None = None
) -> str | None:
    """The weights hash recorded in a model's manifest, or None for models saved elsewhere."""
    manifest = storage.join(str(path), MANIFEST)
    if not storage.exists(manifest, storage_options):
        return None
    return json.loads(storage.read_bytes(manifest, storage_options)).get("weights_sha256")
