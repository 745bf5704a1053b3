"""The retain-only model's reference: per-example forget truth ratios and MIA AUCs, cached.

Forget quality and privleak compare a model with one never trained on the forget split. Its
numbers depend only on the retain model, the dataset and a few settings, so they are computed once
and cached: ``cached_reference(key, compute)`` is the one "look it up, else compute and save it"
every caller uses (single process, the distributed eval job, in-training evaluation).

The key is made of hashes of the bytes the numbers depend on (``reference_key``): the dataset's
and the evaluated splits' content hashes (recomputed from the files), the retain model's weights
hash (``unlearn.models.model_hash``: the safetensors bytes, checked against the manifest), the
hash of its other files (config, tokenizer) and the settings. A cached document carries its key
and a checksum, both checked when it is read; one that fails is computed again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from unlearn import storage
from unlearn.errors import DataError
from unlearn.eval.config import EvalConfig
from unlearn.eval.merge import (
    REFERENCE_FORMAT,
    answer_nlls,
    by_role,
    forget_truth_ratios,
    mia_aucs,
    union_shards,
)
from unlearn.eval.metrics import MIA_ATTACKS
from unlearn.eval.plan import resolve_splits
from unlearn.eval.shard import evaluate_shard
from unlearn.models.io import state_dict_hash

log = logging.getLogger(__name__)


def reference_from_shards(
    shards: Sequence[dict[str, Any]], cfg: EvalConfig, model_hash: str | None = None
) -> dict[str, Any]:
    """The retain-only model's reference from its ``evaluate_shard(purpose="reference")`` shards."""
    merged = union_shards(shards, "reference")
    forget = by_role(merged, "forget")
    holdout = by_role(merged, "holdout")
    if forget is None:
        raise DataError("the reference shards hold no forget split")
    trs = forget_truth_ratios(merged[forget])
    # the retain model's own AUCs (a reference-model attack of it against itself is meaningless)
    attacks = [
        a
        for a in dict.fromkeys([*cfg.mia_attacks, cfg.privleak_attack])
        if MIA_ATTACKS[a].computed != "reference"
    ]
    return {
        "format": REFERENCE_FORMAT,
        "model_hash": model_hash,
        "dataset_hash": shards[0]["dataset_hash"],
        "forget_split": forget,
        "forget_split_hash": merged[forget]["hash"],
        "holdout_split": holdout,
        "holdout_split_hash": merged[holdout]["hash"] if holdout else None,
        "forget_truth_ratios": trs or {},
        "mia_auc": mia_aucs(merged, forget, holdout, attacks),
        # per-example answer NLL, for the reference-model attack on evaluated models
        "avg_nll": {
            "forget": answer_nlls(merged[forget]),
            **({"holdout": answer_nlls(merged[holdout])} if holdout else {}),
        },
    }


def default_cache_dir() -> str:
    """Where retain references are cached: $UNLEARN_CACHE_DIR/retain_reference (~/.cache/unlearn)."""
    base = os.environ.get("UNLEARN_CACHE_DIR") or str(Path.home() / ".cache" / "unlearn")
    return storage.join(base, "retain_reference")


def reference_key(
    dataset: Any, cfg: EvalConfig, weights_hash: str, model_files: str | None = None
) -> str:
    """Cache key of a retain reference: dataset, forget / holdout split content, model weights,
    the model's other files (``model_files``: config and tokenizer, ``unlearn.models.files_hash``)
    and the settings that change the numbers."""
    splits = resolve_splits(dataset, cfg, "reference")
    material = {
        "format": REFERENCE_FORMAT,
        "dataset": dataset.hash,
        "splits": [(n, r, dataset.split_hash(n)) for n, r in splits],
        "weights": weights_hash,
        "model_files": model_files,
        "max_length": cfg.max_length,
        "min_k": cfg.min_k,
        "attacks": sorted(set([*cfg.mia_attacks, cfg.privleak_attack])),
        "max_examples_per_split": cfg.max_examples_per_split,
        "on_missing_perturbed": cfg.on_missing_perturbed,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def cached_reference(
    key: str,
    compute: Callable[[], dict[str, Any]],
    *,
    cache_dir: str | None = None,
    storage_options: dict[str, Any] | None = None,
    write: bool = True,
) -> dict[str, Any]:
    """The reference cached under ``key``, else ``compute()``'s, saved under ``key`` (if ``write``).

    The stored document carries its key and a checksum; one that does not hold ``key`` or fails
    its checksum is computed again (and replaced). Under several ranks every rank calls this
    (``compute`` may be collective) and one ``write``s.
    """
    path = storage.join(cache_dir or default_cache_dir(), f"{key}.json")
    if storage.exists(path, storage_options):
        ref = _read_checked(path, key, storage_options)
        if ref is not None:
            return ref
    ref = {**compute(), "key": key}
    ref["sha256"] = _digest(ref)
    if write:
        storage.write_bytes(
            path, json.dumps(ref, indent=1, allow_nan=False).encode(), storage_options
        )
    return ref


def _digest(ref: dict[str, Any]) -> str:
    body = {k: v for k, v in ref.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, allow_nan=False).encode()).hexdigest()


def _read_checked(path: str, key: str, storage_options: dict | None) -> dict[str, Any] | None:
    """A cached reference if it holds ``key`` and its checksum matches, else None (logged)."""
    try:
        ref = json.loads(storage.read_bytes(path, storage_options))
    except ValueError as exc:
        log.warning("%s is not valid JSON (%s); the reference is computed again", path, exc)
        return None
    if not isinstance(ref, dict) or ref.get("key") != key:
        log.warning("%s was stored under another key; the reference is computed again", path)
        return None
    if ref.get("sha256") != _digest(ref):
        log.warning("%s fails its checksum; the reference is computed again", path)
        return None
    return ref


def retain_reference(
    model: Any,
    tokenizer: Any,
    dataset: Any,
    cfg: EvalConfig,
    *,
    weights_hash: str | None = None,
    cache_dir: str | None = None,
    use_cache: bool = True,
) -> dict[str, Any]:
    """The retain-only model's per-example forget truth ratios and MIA AUCs (one process), cached.

    Keyed by ``reference_key`` (dataset hash, split hashes, ``weights_hash`` — computed from the
    model's state dict when not given — and settings); stored under ``cache_dir`` (default
    ``default_cache_dir()``).
    """
    wh = weights_hash or state_dict_hash(model)

    def compute() -> dict[str, Any]:
        shard = evaluate_shard(model, tokenizer, dataset, cfg, purpose="reference")
        return reference_from_shards([shard], cfg, model_hash=wh)

    if not use_cache:
        return compute()
    return cached_reference(reference_key(dataset, cfg, wh), compute, cache_dir=cache_dir)
