"""Evaluation: the field's unlearning metrics, computed per rank and merged.

The parts, in the order data flows through them: ``plan`` (which splits, roles and rows a rank
evaluates), ``scoring`` (the only model-running code), ``shard`` (``evaluate_shard``: one rank's
per-example statistics), ``merge`` (``merge_shards``: metrics from every rank's shard),
``reference`` (the retain-only model's cached numbers), ``document`` (metrics.json) and ``report``
(report.html). ``evaluate(model, tokenizer, dataset, cfg, retain_reference)`` does it all in one
process.
"""

from unlearn.eval.config import EvalConfig
from unlearn.eval.document import flat_numbers, metrics_document, write_metrics
from unlearn.eval.merge import evaluate, merge_shards, split_metrics
from unlearn.eval.metrics import METRICS, MIA_ATTACKS, SPLIT_METRICS, get_metric, selection_score
from unlearn.eval.reference import (
    cached_reference,
    default_cache_dir,
    reference_from_shards,
    reference_key,
    retain_reference,
)
from unlearn.eval.report import render_report, write_report
from unlearn.eval.shard import evaluate_records, evaluate_shard

__all__ = [
    "METRICS",
    "MIA_ATTACKS",
    "SPLIT_METRICS",
    "EvalConfig",
    "cached_reference",
    "default_cache_dir",
    "evaluate",
    "evaluate_records",
    "evaluate_shard",
    "flat_numbers",
    "get_metric",
    "merge_shards",
    "metrics_document",
    "reference_from_shards",
    "reference_key",
    "render_report",
    "retain_reference",
    "selection_score",
    "split_metrics",
    "write_metrics",
    "write_report",
]
