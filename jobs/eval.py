"""Distributed evaluation on Ray: each worker loads the model once and evaluates one strided shard;
the driver merges the shards and writes ``metrics.json`` and ``report.html``.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python -m jobs.eval --model models/unlearned --data data/synth --retain-model models/retain \
        --out runs/eval --workers 4

(``unlearn eval`` runs the same thing; without ``--address`` it starts a local Ray.) The retain
model's reference (forget truth ratios, MIA AUCs) is computed the same way once and cached by
dataset, split and weights hash (``unlearn.eval.default_cache_dir()`` or ``--cache-dir``).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import ray

from jobs.common import init_ray
from unlearn import storage
from unlearn.data import Dataset
from unlearn.errors import OutputExistsError
from unlearn.eval import (
    EvalConfig,
    evaluate_shard,
    load_cached_reference,
    merge_shards,
    metrics_document,
    model_hash,
    reference_from_shards,
    reference_key,
    save_reference,
    state_dict_hash,
    write_metrics,
    write_report,
)


@ray.remote
class EvalWorker:
    """Holds one model; evaluates shards of a dataset with it."""

    def __init__(
        self,
        model_path: str,
        data_path: str,
        storage_options: dict | None,
        device: str,
        threads: int,
    ) -> None:
        import torch

        from unlearn.models import load_model

        torch.set_num_threads(threads)
        self.model, self.tokenizer = load_model(model_path, storage_options=storage_options)
        self.model.to(device)
        self.dataset = Dataset(data_path, storage_options)

    def shard(self, cfg: EvalConfig, rank: int, world_size: int, purpose: str) -> dict[str, Any]:
        """``evaluate_shard`` for this rank."""
        return evaluate_shard(
            self.model, self.tokenizer, self.dataset, cfg, rank, world_size, purpose=purpose
        )

    def weights_hash(self) -> str:
        """Hash of the loaded weights (for models without a manifest)."""
        return state_dict_hash(self.model)

    def node_ip(self) -> str:
        """The IP address of the node this worker runs on."""
        return ray.util.get_node_ip_address()


def run_shards(
    model_path: str,
    data_path: str,
    cfg: EvalConfig,
    workers: int,
    purpose: str = "metrics",
    *,
    cpus_per_worker: float = 1.0,
    use_gpu: bool = False,
    storage_options: dict | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Evaluate ``model_path`` on ``workers`` Ray actors; returns (shards, weights hash of the loaded model)."""
    threads = max(1, int(cpus_per_worker))
    actors = [
        EvalWorker.options(num_cpus=cpus_per_worker, num_gpus=1 if use_gpu else 0).remote(
            model_path, data_path, storage_options, "cuda" if use_gpu else "cpu", threads
        )
        for _ in range(workers)
    ]
    try:
        shards = ray.get([a.shard.remote(cfg, r, workers, purpose) for r, a in enumerate(actors)])
        digest = ray.get(actors[0].weights_hash.remote()) if purpose == "reference" else None
    finally:
        for a in actors:
            ray.kill(a)
    return shards, digest


def compute_reference(
    retain_model: str,
    data: str,
    cfg: EvalConfig,
    workers: int = 1,
    *,
    cache_dir: str | None = None,
    cpus_per_worker: float = 1.0,
    use_gpu: bool = False,
    storage_options: dict | None = None,
) -> dict[str, Any]:
    """The retain model's reference (forget truth ratios, MIA AUCs): from the cache, else computed
    on ``workers`` Ray actors and cached. Ray must be initialized."""
    dataset = Dataset(data, storage_options)
    digest = model_hash(retain_model, storage_options)
    if digest is not None:
        cached = load_cached_reference(
            reference_key(dataset, cfg, digest), cache_dir, storage_options
        )
        if cached is not None:
            return cached
    shards, loaded = run_shards(
        retain_model,
        data,
        cfg,
        workers,
        "reference",
        cpus_per_worker=cpus_per_worker,
        use_gpu=use_gpu,
        storage_options=storage_options,
    )
    digest = digest or loaded
    reference = reference_from_shards(shards, cfg, model_hash=digest)
    save_reference(reference, reference_key(dataset, cfg, digest), cache_dir, storage_options)
    return reference


def run_eval(
    model: str,
    data: str,
    out: str,
    *,
    retain_model: str | None = None,
    cfg: EvalConfig | None = None,
    workers: int = 1,
    address: str | None = None,
    num_cpus: int | None = None,
    cpus_per_worker: float = 1.0,
    use_gpu: bool = False,
    cache_dir: str | None = None,
    name: str | None = None,
    compare: dict[str, str] | None = None,
    storage_options: dict | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Evaluate ``model`` on ``data`` across ``workers``; writes out/metrics.json and out/report.html.

    ``compare``: name -> path of other metrics.json files shown beside this model in the report.
    Returns the metrics.json document.
    """
    import json

    cfg = cfg or EvalConfig()
    cfg.check()
    if workers < 1:
        raise ValueError(f"--workers must be >= 1, got {workers}")
    metrics_path = storage.join(out, "metrics.json")
    if storage.exists(metrics_path, storage_options) and not overwrite:
        raise OutputExistsError(f"{metrics_path} exists; pass --overwrite to replace it")
    others = {
        k: json.loads(storage.read_bytes(p, storage_options)) for k, p in (compare or {}).items()
    }
    dataset = Dataset(data, storage_options)
    kw = dict(cpus_per_worker=cpus_per_worker, use_gpu=use_gpu, storage_options=storage_options)
    started = not ray.is_initialized()
    init_ray(address, num_cpus)
    try:
        reference = None
        if retain_model is not None:
            reference = compute_reference(
                retain_model, data, cfg, workers, cache_dir=cache_dir, **kw
            )
        shards, _ = run_shards(model, data, cfg, workers, "metrics", **kw)
    finally:
        if started:
            ray.shutdown()
    metrics = merge_shards(shards, cfg, reference)
    doc = metrics_document(
        metrics,
        model_path=model,
        model_hash=model_hash(model, storage_options),
        dataset=dataset,
        cfg=cfg,
        retain_model_path=retain_model,
    )
    write_metrics(metrics_path, doc, storage_options)
    label = name or os.path.basename(str(model).rstrip("/")) or "model"
    write_report(
        storage.join(out, "report.html"),
        {label: doc, **others},
        title=f"Unlearning evaluation: {label}",
        storage_options=storage_options,
    )
    return doc


if __name__ == "__main__":
    from unlearn.cli import main

    sys.exit(main(["eval", *sys.argv[1:]]))
