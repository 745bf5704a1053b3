"""The run directory: what a run leaves behind, and how a new run treats an existing one.

Layout (local or s3://): ``data_hashes.json`` (the run's inputs: dataset and split content hashes,
model weights hash), ``config.yaml`` (resolved), ``reference_logprobs.safetensors`` (methods with
a cached reference), ``metrics.jsonl`` (per-step metrics), ``model/`` (consolidated HF model:
safetensors + tokenizer), ``best_model/``, ``eval_cache/``, ``tensorboard/``, ``checkpoints/`` (the
training shell's checkpoint storage) and ``run.json`` (written last: status "finished", or "failed" with the
reason).

``plan`` decides, before any work, what a new run does with ``output.dir``: start a new run
(absent or empty), resume an unfinished or failed one with the same config and inputs, or, with
``output.overwrite``, build a new run in a staging directory beside it that replaces the old run
only once it has finished (``publish``). Anything that is not a run directory is refused.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import yaml

from unlearn import storage
from unlearn.config import to_dict
from unlearn.engine.config import RunConfig
from unlearn.errors import OutputExistsError

RUN_FILE = "run.json"
CONFIG_FILE = "config.yaml"
INPUTS_FILE = "data_hashes.json"
OVERWRITE_FLAG = "--overwrite (output.overwrite=true)"


def _is_run(files: dict[str, bytes]) -> str | None:
    try:
        raw = json.loads(files[INPUTS_FILE])
    except ValueError:
        return f"its {INPUTS_FILE} is not JSON"
    if not isinstance(raw, dict) or "dataset" not in raw or "splits" not in raw:
        return f"its {INPUTS_FILE} is not a run's input record"
    return None


# What a run directory holds; data_hashes.json (written first) marks it.
KIND = storage.OutputKind(
    "run",
    (INPUTS_FILE,),
    (
        INPUTS_FILE,
        CONFIG_FILE,
        RUN_FILE,
        "metrics.jsonl",
        "reference_logprobs.safetensors",
        "model",
        "best_model",
        "checkpoints",
        "eval_cache",
        "tensorboard",
    ),
    validate=_is_run,
)


def path(cfg: RunConfig, *parts: str) -> str:
    """A path inside the run directory."""
    return storage.join(cfg.output.dir, *parts)


def read_json(location: str, storage_options: dict | None = None) -> Any:
    """Read a JSON file (local or S3)."""
    return json.loads(storage.read_bytes(location, storage_options))


def write_json(location: str, obj: Any, storage_options: dict | None = None) -> None:
    """Write a JSON file atomically (local or S3)."""
    storage.write_bytes(
        location, json.dumps(obj, indent=2, sort_keys=True).encode(), storage_options
    )


@dataclasses.dataclass
class RunPlan:
    """What ``plan`` decided: ``mode`` ("new", "resume" or "replace"), the config to train with
    (``cfg.output.dir`` is the staging directory when replacing) and the run's final config."""

    mode: str
    cfg: RunConfig
    final: RunConfig
    previous: dict[str, Any] | None = None  # the run.json of a failed run being resumed

    @property
    def staged(self) -> bool:
        """True when the run is built beside ``output.dir`` and published when it finishes."""
        return self.mode == "replace"


def status(cfg: RunConfig) -> dict[str, Any] | None:
    """The run.json in ``output.dir`` (finished or failed), or None."""
    opts = cfg.output.storage_options
    run_file = path(cfg, RUN_FILE)
    if not storage.exists(run_file, opts):
        return None
    try:
        found = read_json(run_file, opts)
    except ValueError:
        return {"status": "corrupt", "reason": f"{run_file} is not valid JSON"}
    return found if isinstance(found, dict) else {"status": "corrupt"}


def _dotted(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += _dotted(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else str(k))
        return out
    return [] if a == b else [prefix or "(all)"]


def plan(cfg: RunConfig, inputs: dict[str, Any]) -> RunPlan:
    """Check ``output.dir`` against this run and record the run's inputs; returns the plan.

    A finished run is refused unless ``output.overwrite``; an unfinished or failed one with the
    same config and inputs resumes from its latest checkpoint; one with other inputs is refused
    (it would silently mix). With ``output.overwrite`` an existing run is replaced only once the
    new one has finished. Nothing that is not a run directory is ever replaced.
    """
    opts = cfg.output.storage_options
    replacing = storage.check_output(
        cfg.output.dir, KIND, opts, overwrite=True, flag=OVERWRITE_FLAG
    )
    mode, run_cfg, previous = "new", cfg, None
    if replacing:
        found = status(cfg)
        if cfg.output.overwrite:
            mode = "replace"
            staged = storage.staging_path(cfg.output.dir, opts)
            run_cfg = dataclasses.replace(cfg, output=dataclasses.replace(cfg.output, dir=staged))
        elif found is not None and found.get("status") == "finished":
            raise OutputExistsError(
                f"{cfg.output.dir} holds a finished run ({path(cfg, RUN_FILE)}); pass "
                f"{OVERWRITE_FLAG} to replace it or choose another output.dir"
            )
        else:
            _same_run_or_refuse(cfg, inputs, found)
            mode, previous = "resume", found
    write_json(path(run_cfg, INPUTS_FILE), inputs, opts)  # first: it marks a run directory
    storage.write_bytes(
        path(run_cfg, CONFIG_FILE),
        yaml.safe_dump(to_dict(run_cfg), sort_keys=False).encode(),
        opts,
    )
    return RunPlan(mode, run_cfg, cfg, previous)


def _same_run_or_refuse(
    cfg: RunConfig, inputs: dict[str, Any], found: dict[str, Any] | None
) -> None:
    opts = cfg.output.storage_options
    what = "a failed run" if found and found.get("status") == "failed" else "an unfinished run"
    previous = read_json(path(cfg, INPUTS_FILE), opts)
    config_file = path(cfg, CONFIG_FILE)
    old_cfg = (
        yaml.safe_load(storage.read_bytes(config_file, opts))
        if storage.exists(config_file, opts)
        else {}
    )
    changed = _dotted(_without_output(old_cfg or {}), _without_output(to_dict(cfg)))
    changed += [f"inputs.{k}" for k in _dotted(previous, inputs)]
    if changed:
        raise OutputExistsError(
            f"{cfg.output.dir} holds {what} with another config or inputs (differs in: "
            f"{', '.join(changed[:5])}); pass {OVERWRITE_FLAG} to replace it or choose another "
            "output.dir"
        )


def prepare(cfg: RunConfig, inputs: dict[str, Any]) -> str:
    """``plan`` for runs trained in place (one process, tests); returns "new" or "resume"."""
    planned = plan(cfg, inputs)
    if planned.staged:
        storage.discard_staged(planned.cfg.output.dir, cfg.output.storage_options)
        raise ValueError("prepare() trains in place: use plan() to replace an existing run")
    return planned.mode


def record_failure(cfg: RunConfig, reason: str) -> None:
    """Write run.json with status "failed" and the reason (never over a finished run)."""
    opts = cfg.output.storage_options
    found = status(cfg)
    if found is not None and found.get("status") == "finished":
        return
    write_json(
        path(cfg, RUN_FILE),
        {
            "status": "failed",
            "reason": reason,
            "method": cfg.method.name,
            "failed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
        opts,
    )


def publish(planned: RunPlan) -> None:
    """A finished run built beside ``output.dir`` replaces the old run there (``plan``)."""
    if planned.staged:
        storage.publish_staged(
            planned.cfg.output.dir,
            planned.final.output.dir,
            KIND,
            planned.final.output.storage_options,
            commit_last=(RUN_FILE,),
        )


def discard(planned: RunPlan) -> None:
    """Remove a staging directory whose run failed (the old run stays as it was)."""
    if planned.staged:
        storage.discard_staged(planned.cfg.output.dir, planned.final.output.storage_options)


def input_model_hash(cfg: RunConfig) -> str:
    """The starting model's weights hash: from the run's input record (computed from the weights
    on the driver when the run started), else from the weights."""
    from unlearn.models import model_hash

    opts = cfg.output.storage_options
    inputs_file = path(cfg, INPUTS_FILE)
    if storage.exists(inputs_file, opts):
        recorded = read_json(inputs_file, opts).get("model")
        if isinstance(recorded, str):
            return recorded
    return model_hash(cfg.model.path, cfg.model.storage_options)


def _without_output(cfg: dict[str, Any]) -> dict[str, Any]:
    # output.overwrite / checkpoint settings may change when an interrupted run is resumed
    return {k: v for k, v in cfg.items() if k != "output"}
