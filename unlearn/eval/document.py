"""metrics.json: the merged metrics plus provenance, written atomically, never with NaN."""

from __future__ import annotations

import json
import math
from typing import Any

from unlearn import storage
from unlearn.eval.config import EvalConfig

SCHEMA_VERSION = 1


def metrics_document(
    metrics: dict[str, Any],
    *,
    model_path: str | None,
    model_hash: str | None,
    dataset: Any,
    cfg: EvalConfig,
    retain_model_path: str | None = None,
) -> dict[str, Any]:
    """metrics.json: the merged metrics plus provenance (model, dataset, eval config)."""
    from unlearn.config import to_dict

    doc = {"schema_version": SCHEMA_VERSION, **metrics}
    doc["model"] = {"path": model_path, "hash": model_hash}
    doc["dataset"] = {"path": dataset.path, "hash": dataset.hash}
    if retain_model_path is not None and doc.get("retain_reference") is not None:
        doc["retain_reference"] = {**doc["retain_reference"], "model_path": retain_model_path}
    doc["eval_config"] = to_dict(cfg)
    return doc


def dumps(document: dict[str, Any]) -> str:
    """Serialize a metrics document (no NaN / infinity: they are not JSON)."""
    return json.dumps(_finite(document), indent=2, allow_nan=False)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        raise ValueError(f"metric value {obj} is not finite")
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def write_metrics(
    path: str, document: dict[str, Any], storage_options: dict[str, Any] | None = None
) -> None:
    """Write metrics.json (local or S3, atomically)."""
    storage.write_bytes(path, dumps(document).encode(), storage_options)


def flat_numbers(metrics: dict[str, Any]) -> dict[str, float | None]:
    """The evaluation's numbers as one flat mapping, the names objectives and dashboards use.

    ``forget_quality``, ``model_utility``, ``privleak``, ``score``; ``<role>.<metric>`` for the
    forget / retain / holdout splits (``forget.rouge_l_recall``: role names, so a config works on
    any dataset's split names); ``<split>.<metric>`` for utility splits (``world_facts.probability``);
    ``mia.<attack>`` for MIA AUCs (forget vs holdout). Null where the evaluation computed nothing.
    """
    out: dict[str, float | None] = {
        k: metrics.get(k) for k in ("forget_quality", "model_utility", "privleak", "score")
    }
    roles = metrics.get("roles") or {}
    for split, values in (metrics.get("splits") or {}).items():
        role = roles.get(split)
        prefix = role if role in ("forget", "retain", "holdout") else split
        for name, value in values.items():
            out[f"{prefix}.{name}"] = value
    for attack, result in (metrics.get("mia") or {}).items():
        out[f"mia.{attack}"] = result.get("auc")
    return out
