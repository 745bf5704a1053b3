"""A sweep's result files: ``trials.parquet`` (one row per trial and epoch) and ``pareto.json``.

``trials.parquet`` columns: ``trial_id``, ``epoch`` (epochs completed: 1 = after the first),
``checkpoint`` (the epoch's training checkpoint, null where the run kept none), ``config/<key>``
(the trial's sampled and fixed space values, dotted run-config keys), then every number the epoch
reported (losses, lr, the evaluation's numbers, derived ones such as ``abs_privleak``).

``pareto.json`` = ``{"objectives": {name: "max"|"min"}, "trials": [{"trial_id", "epoch",
"config", "metrics", "model_path", "model_id"}, ...]}``: exactly the non-dominated rows among
those with a checkpoint (``unlearn.sweep.pareto``), with the exported model of each; the command
line adds how to run the front's models.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from typing import Any

from unlearn import storage

TRIALS_FILE = "trials.parquet"
PARETO_FILE = "pareto.json"
HTML_FILE = "sweep.html"
FIXED_COLUMNS = ("trial_id", "epoch", "checkpoint")


def _column(values: list[Any]) -> list[Any]:
    """One type per column: numbers stay numbers (ints widen to float when mixed), else text."""
    present = [v for v in values if v is not None]
    if all(isinstance(v, bool) for v in present):
        return values
    if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return values
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return [None if v is None else float(v) for v in values]
    if all(isinstance(v, str) for v in present):
        return values
    return [None if v is None else json.dumps(v) for v in values]


def table_columns(rows: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """The trials table as ordered columns (see the module docstring)."""
    config_keys = sorted({k for r in rows for k in r["config"]})
    metric_keys = sorted({k for r in rows for k in r["metrics"]} - set(FIXED_COLUMNS))
    cols: dict[str, list[Any]] = {
        "trial_id": [str(r["trial_id"]) for r in rows],
        "epoch": [int(r["epoch"]) for r in rows],
        "checkpoint": [r.get("checkpoint") for r in rows],
    }
    for k in config_keys:
        cols[f"config/{k}"] = _column([r["config"].get(k) for r in rows])
    for k in metric_keys:
        values = [r["metrics"].get(k) for r in rows]
        cols[k] = _column(
            [None if isinstance(v, float) and not math.isfinite(v) else v for v in values]
        )
    return cols


def write_trials(
    path: str, rows: Sequence[dict[str, Any]], storage_options: dict | None = None
) -> None:
    """Write trials.parquet (atomically, local or S3)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = table_columns(rows)
    table = pa.table(cols) if rows else pa.table({k: pa.array([], pa.string()) for k in cols})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    storage.write_bytes(path, buf.getvalue(), storage_options)


def read_trials(path: str, storage_options: dict | None = None) -> list[dict[str, Any]]:
    """trials.parquet back into rows {trial_id, epoch, checkpoint, config, metrics}."""
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(storage.read_bytes(path, storage_options))).to_pylist()
    out = []
    for rec in table:
        out.append(
            {
                "trial_id": rec["trial_id"],
                "epoch": rec["epoch"],
                "checkpoint": rec["checkpoint"],
                "config": {
                    k.removeprefix("config/"): v
                    for k, v in rec.items()
                    if k.startswith("config/") and v is not None
                },
                "metrics": {
                    k: v
                    for k, v in rec.items()
                    if k not in FIXED_COLUMNS and not k.startswith("config/") and v is not None
                },
            }
        )
    return out


def model_id(row: dict[str, Any]) -> str:
    """The served model's id of a front row: ``<trial_id>-e<epoch>``."""
    return f"{row['trial_id']}-e{row['epoch']}"


def pareto_document(
    rows: Sequence[dict[str, Any]],
    front: Sequence[int],
    objectives: dict[str, str],
    model_paths: dict[int, str],
) -> dict[str, Any]:
    """pareto.json (see the module docstring); ``model_paths``: front index -> exported model."""
    trials = []
    for i in front:
        r = rows[i]
        mid = model_id(r)
        path = model_paths.get(i)
        trials.append(
            {
                "trial_id": r["trial_id"],
                "epoch": r["epoch"],
                "config": r["config"],
                "metrics": {k: v for k, v in r["metrics"].items() if _jsonable(v)},
                "model_path": path,
                "model_id": mid,
            }
        )
    return {"objectives": dict(objectives), "trials": trials}


def _jsonable(v: Any) -> bool:
    return (
        v is None or isinstance(v, str | bool | int) or (isinstance(v, float) and math.isfinite(v))
    )


def write_pareto(path: str, document: dict[str, Any], storage_options: dict | None = None) -> None:
    """Write pareto.json (atomically, local or S3)."""
    storage.write_bytes(
        path, json.dumps(document, indent=2, allow_nan=False).encode(), storage_options
    )
