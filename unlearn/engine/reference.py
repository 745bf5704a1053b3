"""Teacher-forced passes over whole streams, split across workers: the reference log-prob cache
(computed once before training, stored with the run) and the before/after loss summary.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import torch

from unlearn import storage
from unlearn.engine.data import Example, collate, shard
from unlearn.engine.distributed import all_gather_objects
from unlearn.errors import UnlearnError
from unlearn.models.batching import sequence_logprobs

CACHE_FILE = "reference_logprobs.safetensors"


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
    """Write the reference cache (safetensors, metadata as JSON strings)."""
    from safetensors.torch import save

    data = save(
        {k: v.contiguous() for k, v in cache.items()},
        metadata={"meta": json.dumps(meta, sort_keys=True)},
    )
    storage.write_bytes(path, data, storage_options)


def load_cache(
    path: str, expected_meta: dict[str, Any], storage_options: dict | None = None
) -> dict[str, torch.Tensor] | None:
    """Read a cache written by ``save_cache``; None if absent, error if made for other inputs."""
    from safetensors.torch import load

    if not storage.exists(path, storage_options):
        return None
    raw = storage.read_bytes(path, storage_options)
    header_len = int.from_bytes(raw[:8], "little")  # safetensors: u64 header size, JSON header
    meta = json.loads(json.loads(raw[8 : 8 + header_len])["__metadata__"]["meta"])
    if meta != expected_meta:
        raise UnlearnError(
            f"{path} was computed for other inputs ({meta} != {expected_meta}); use a new output dir or --overwrite"
        )
    return load(raw)
