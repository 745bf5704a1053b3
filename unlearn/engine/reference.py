"""Teacher-forced passes over whole streams, split across workers: the reference log-prob cache
(computed once before training, stored with the run) and the before/after loss summary.

The cache is keyed by what its numbers depend on, as hashes of bytes (``cache_meta``): the
starting model's weights hash, its dtype, and each cached stream's tokenized examples (ids, input
ids and labels: the dataset's content, the tokenizer, ``max_length`` and any row transform). It
carries a checksum of its tensors, checked when read; a cache made for other inputs, or damaged,
is never used.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch

from unlearn import storage
from unlearn.engine.data import Example, collate, shard
from unlearn.engine.distributed import all_gather_objects
from unlearn.models.batching import sequence_logprobs

CACHE_FILE = "reference_logprobs.safetensors"
CACHE_FORMAT = 2
log = logging.getLogger(__name__)


def stream_digest(examples: Sequence[Example]) -> str:
    """SHA-256 over a tokenized stream (each example's id, input ids and labels, in order)."""
    h = hashlib.sha256()
    for e in examples:
        h.update(json.dumps([e.id, e.input_ids, e.labels]).encode())
        h.update(b"\n")
    return h.hexdigest()


def cache_meta(
    model_hash: str, dtype: str, streams: dict[str, Sequence[Example]]
) -> dict[str, Any]:
    """The reference cache's key: the model's weights hash and dtype, and every cached stream's
    size and content hash."""
    return {
        "format": CACHE_FORMAT,
        "model": model_hash,
        "dtype": dtype,
        "streams": {
            name: {"n": len(ex), "sha256": stream_digest(ex)}
            for name, ex in sorted(streams.items())
        },
    }


def tensors_digest(cache: dict[str, torch.Tensor]) -> str:
    """SHA-256 over named tensors (names, dtypes, shapes, bytes), in name order."""
    h = hashlib.sha256()
    for name, t in sorted(cache.items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@torch.no_grad()
def stream_logprobs(
    forward: Callable[..., Any],
    examples: Sequence[Example],
    *,
    batch_size: int,
    rank: int,
    world_size: int,
    pad_id: int,
    device: torch.device,
) -> dict[str, torch.Tensor]:
    """Summed and mean answer log-probs of every example (all ranks get the full result).

    Each rank scores its share in equal batch counts (collective forwards under ZeRO-3 stay in
    lockstep); results are gathered and ordered by example index.
    """
    local: list[tuple[int, float, int]] = []
    for indices, real in shard(len(examples), rank, world_size, batch_size):
        batch = collate([examples[i] for i in indices], pad_id)
        out = forward(
            input_ids=batch["input_ids"].to(device),
            attention_mask=batch["attention_mask"].to(device),
            use_cache=False,
        )
        lp = sequence_logprobs(out.logits, batch["labels"].to(device))
        for j, ok in enumerate(real):
            if ok:
                local.append((indices[j], float(lp.sum[j]), int(lp.count[j])))
    total = torch.zeros(len(examples), dtype=torch.float64)
    count = torch.zeros(len(examples), dtype=torch.long)
    for part in all_gather_objects(local):
        for i, s, c in part:
            total[i], count[i] = s, c
    return {"sum": total.float(), "count": count}


def mean_nll(stats: dict[str, torch.Tensor]) -> float:
    """Mean over examples of per-example mean answer NLL (the engine's NLL loss, over a whole split)."""
    return float((-stats["sum"] / stats["count"].clamp(min=1)).mean())


def save_cache(
    path: str,
    cache: dict[str, torch.Tensor],
    meta: dict[str, Any],
    storage_options: dict | None = None,
) -> None:
    """Write the reference cache (safetensors; its key and a checksum of the tensors as metadata)."""
    from safetensors.torch import save

    tensors = {k: v.contiguous() for k, v in cache.items()}
    data = save(
        tensors,
        metadata={"meta": json.dumps(meta, sort_keys=True), "sha256": tensors_digest(tensors)},
    )
    storage.write_bytes(path, data, storage_options)


def load_cache(
    path: str, expected_meta: dict[str, Any], storage_options: dict | None = None
) -> dict[str, torch.Tensor] | None:
    """Read a cache written by ``save_cache`` for exactly these inputs; None when there is none
    usable (absent, made for other inputs, or damaged: the reason is logged)."""
    from safetensors.torch import load

    if not storage.exists(path, storage_options):
        return None
    raw = storage.read_bytes(path, storage_options)
    try:
        header_len = int.from_bytes(raw[:8], "little")  # u64 header size, then a JSON header
        header = json.loads(raw[8 : 8 + header_len])["__metadata__"]
        meta = json.loads(header["meta"])
        tensors = load(raw)
    except Exception as exc:  # any damage: the file is not a cache we can trust
        log.warning("%s is damaged (%s); the reference is computed again", path, exc)
        return None
    if meta != expected_meta:
        log.warning("%s was computed for other inputs; the reference is computed again", path)
        return None
    if header.get("sha256") != tensors_digest(tensors):
        log.warning("%s fails its checksum; the reference is computed again", path)
        return None
    for name, info in expected_meta.get("streams", {}).items():
        if name not in tensors or tensors[name].shape[0] != info["n"]:
            log.warning("%s lacks stream %r; the reference is computed again", path, name)
            return None
    return tensors
