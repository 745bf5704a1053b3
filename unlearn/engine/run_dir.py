"""The run directory: what a run leaves behind, and the refusal to clobber a finished one.

Layout (local or s3://): ``config.yaml`` (resolved), ``data_hashes.json``, ``reference_logprobs
.safetensors`` (methods with a cached reference), ``metrics.jsonl`` (per-step metrics), ``model/``
(consolidated HF model: safetensors + tokenizer), ``checkpoints/`` (the training shell's checkpoint storage) and
``run.json`` (the summary, written last: its presence with status "finished" marks a finished run).
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from unlearn import storage
from unlearn.config import to_dict
from unlearn.engine.config import RunConfig
from unlearn.errors import OutputExistsError

RUN_FILE = "run.json"


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


def prepare(cfg: RunConfig, data_hashes: dict[str, Any]) -> str:
    """Check the output dir and record the run's inputs; returns "new" or "resume".

    A finished run is refused unless ``output.overwrite``; an unfinished one with the same inputs
    resumes from its latest checkpoint; one with other inputs is refused (it would silently mix).
    """
    opts = cfg.output.storage_options
    run_file = path(cfg, RUN_FILE)
    if storage.exists(cfg.output.dir, opts) and cfg.output.overwrite:
        fs, inner = storage.filesystem(cfg.output.dir, opts)
        fs.rm(inner, recursive=True)
    if storage.exists(run_file, opts) and read_json(run_file, opts).get("status") == "finished":
        raise OutputExistsError(
            f"{cfg.output.dir} holds a finished run ({run_file}); pass --overwrite (output.overwrite=true) or choose another output.dir"
        )
    mode = "new"
    hashes_file = path(cfg, "data_hashes.json")
    if storage.exists(hashes_file, opts):
        previous = read_json(hashes_file, opts)
        old_cfg = yaml.safe_load(storage.read_bytes(path(cfg, "config.yaml"), opts))
        if previous != data_hashes or _without_output(old_cfg) != _without_output(to_dict(cfg)):
            raise OutputExistsError(
                f"{cfg.output.dir} holds an unfinished run with another config or dataset; "
                "pass --overwrite to discard it or choose another output.dir"
            )
        mode = "resume"
    storage.write_bytes(
        path(cfg, "config.yaml"), yaml.safe_dump(to_dict(cfg), sort_keys=False).encode(), opts
    )
    write_json(hashes_file, data_hashes, opts)
    return mode


def _without_output(cfg: dict[str, Any]) -> dict[str, Any]:
    # output.overwrite / checkpoint settings may change when an interrupted run is resumed
    return {k: v for k, v in cfg.items() if k != "output"}
