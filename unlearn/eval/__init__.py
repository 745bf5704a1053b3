"""Evaluation: the field's unlearning metrics, computed per rank and merged (see runner.py).

``evaluate(model, tokenizer, dataset, cfg, retain_reference)`` in one process;
``evaluate_shard`` + ``merge_shards`` across ranks (Ray tasks or Ray Train workers);
``retain_reference`` for the retain-only model's cached numbers; ``write_report`` for report.html.
"""

from unlearn.eval.config import EvalConfig
from unlearn.eval.metrics import METRICS, MIA_ATTACKS, SPLIT_METRICS, get_metric, selection_score
from unlearn.eval.report import render_report, write_report
from unlearn.eval.runner import (
    default_cache_dir,
    evaluate,
    evaluate_shard,
    load_cached_reference,
    merge_shards,
    metrics_document,
    model_hash,
    reference_from_shards,
    reference_key,
    retain_reference,
    save_reference,
    state_dict_hash,
    write_metrics,
)

__all__ = [
    "METRICS",
    "MIA_ATTACKS",
    "SPLIT_METRICS",
    "EvalConfig",
    "default_cache_dir",
    "evaluate",
    "evaluate_shard",
    "get_metric",
    "load_cached_reference",
    "merge_shards",
    "metrics_document",
    "model_hash",
    "reference_from_shards",
    "reference_key",
    "render_report",
    "retain_reference",
    "save_reference",
    "selection_score",
    "state_dict_hash",
    "write_metrics",
    "write_report",
]
