"""Distributed evaluation on Ray: each worker loads the model once and evaluates one strided shard;
the driver merges the shards and writes ``metrics.json`` and ``report.html``.

    ray job submit --address http://127.0.0.1:8265 --working-dir . -- \
        python -m jobs.eval --model models/unlearned --data data/synth --retain-model models/retain \
        --out runs/eval --workers 4
    unlearn eval --model M --data D --out O forget_split=forget01 max_new_tokens=200

Without ``--address`` (or RAY_ADDRESS) it starts a local Ray. Arguments map onto
``EvalJobConfig`` (``--config`` YAML, flags, then dotted ``key=value`` overrides; eval settings may
be written at top level, ``max_new_tokens=200`` for ``eval.max_new_tokens=200``). The retain
model's reference (forget truth ratios, MIA AUCs) is computed the same way once and cached by
dataset, split and weights hash (``unlearn.eval.default_cache_dir()`` or ``--cache-dir``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any

import ray

from jobs.common import init_ray
from unlearn import storage
from unlearn.config import load_config, require
from unlearn.data import Dataset
from unlearn.errors import ConfigError, ModelError, run_command
from unlearn.eval import (
    EvalConfig,
    cached_reference,
    evaluate_shard,
    merge_shards,
    metrics_document,
    reference_from_shards,
    reference_key,
    write_metrics,
    write_report,
)
from unlearn.eval.plan import plan_splits
from unlearn.models import check_model, files_hash, model_hash, state_dict_hash


@dataclass
class EvalScaling:
    """How many Ray workers evaluate, and what each holds."""

    workers: int = 1  # shards, one Ray actor each (the model is loaded once per actor)
    cpus_per_worker: float = 1.0
    use_gpu: bool = False  # one GPU per worker
    num_cpus: int | None = None  # CPUs of a local Ray started here (default: all)

    def check(self) -> None:
        """At least one worker, positive resources."""
        require(self.workers >= 1, "workers", f"must be >= 1, got {self.workers}")
        require(
            self.cpus_per_worker > 0, "cpus_per_worker", f"must be > 0, got {self.cpus_per_worker}"
        )
        require(
            self.num_cpus is None or self.num_cpus >= 1,
            "num_cpus",
            f"must be >= 1 or null, got {self.num_cpus}",
        )


@dataclass
class EvalJobConfig:
    """One evaluation job: which model, against which data and retain model, written where."""

    model: str = ""  # model directory (local or s3://)
    data: str = ""  # dataset directory
    out: str = ""  # output directory: metrics.json and report.html
    retain_model: str | None = None  # trained without the forget split (forget quality, privleak)
    name: str | None = None  # the model's name in the report (default: its directory name)
    compare: dict[str, str] = field(
        default_factory=dict
    )  # name -> other metrics.json for the report
    cache_dir: str | None = None  # retain reference cache (default ~/.cache/unlearn/...)
    overwrite: bool = False
    storage_options: dict[str, Any] | None = None  # s3fs options for every path above
    scaling: EvalScaling = field(default_factory=EvalScaling)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def check(self) -> None:
        """Model, data and output are required; report names are plain."""
        for key in ("model", "data", "out"):
            require(bool(getattr(self, key)), key, f"is required (--{key})")
        for name in self.compare:
            require(bool(name) and "." not in name, "compare", f"bad report name {name!r}")


# command-line flags -> config keys (flags are shorthands for these keys)
FLAGS = {
    "model": "model",
    "data": "data",
    "out": "out",
    "retain_model": "retain_model",
    "name": "name",
    "cache_dir": "cache_dir",
    "workers": "scaling.workers",
    "num_cpus": "scaling.num_cpus",
    "cpus_per_worker": "scaling.cpus_per_worker",
}


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
    scaling: EvalScaling,
    purpose: str = "metrics",
    storage_options: dict | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Evaluate ``model_path`` on ``scaling.workers`` Ray actors; returns (shards, weights hash of
    the loaded model when ``purpose`` is "reference")."""
    n = scaling.workers
    actors = [
        EvalWorker.options(
            num_cpus=scaling.cpus_per_worker, num_gpus=1 if scaling.use_gpu else 0
        ).remote(
            model_path,
            data_path,
            storage_options,
            "cuda" if scaling.use_gpu else "cpu",
            max(1, int(scaling.cpus_per_worker)),
        )
        for _ in range(n)
    ]
    try:
        shards = ray.get([a.shard.remote(cfg, r, n, purpose) for r, a in enumerate(actors)])
        digest = ray.get(actors[0].weights_hash.remote()) if purpose == "reference" else None
    finally:
        for a in actors:
            ray.kill(a)
    return shards, digest


def compute_reference(
    retain_model: str,
    data: str,
    cfg: EvalConfig,
    scaling: EvalScaling | None = None,
    *,
    cache_dir: str | None = None,
    storage_options: dict | None = None,
) -> dict[str, Any]:
    """The retain model's reference (forget truth ratios, MIA AUCs): from the cache, else computed
    on Ray actors and cached. Ray must be initialized."""
    scaling = scaling or EvalScaling()
    dataset = Dataset(data, storage_options)
    digest = model_hash(retain_model, storage_options)

    def compute() -> dict[str, Any]:
        shards, loaded = run_shards(retain_model, data, cfg, scaling, "reference", storage_options)
        return reference_from_shards(shards, cfg, model_hash=digest or loaded)

    return cached_reference(
        reference_key(dataset, cfg, digest, files_hash(retain_model, storage_options)),
        compute,
        cache_dir=cache_dir,
        storage_options=storage_options,
    )


def _is_metrics(files: dict[str, bytes]) -> str | None:
    try:
        doc = json.loads(files["metrics.json"])
    except ValueError:
        return "its metrics.json is not JSON"
    if not isinstance(doc, dict) or "schema_version" not in doc:
        return "its metrics.json is not an evaluation's (no schema_version)"
    return None


# What ``--overwrite`` may replace: an evaluation's output directory.
OUTPUT_KIND = storage.OutputKind(
    "evaluation", ("metrics.json",), ("metrics.json", "report.html"), validate=_is_metrics
)


def read_compare(compare: dict[str, str], opts: dict | None) -> dict[str, Any]:
    """The other models' metrics.json documents shown in the report (checked now)."""
    others = {}
    for name, path in compare.items():
        if not storage.exists(path, opts):
            raise ConfigError(f"compare.{name}: {path} does not exist")
        try:
            doc = json.loads(storage.read_bytes(path, opts))
        except ValueError as exc:
            raise ConfigError(f"compare.{name}: {path} is not valid JSON ({exc})") from None
        if not isinstance(doc, dict) or "schema_version" not in doc:
            raise ConfigError(f"compare.{name}: {path} is not a metrics.json written by unlearn")
        others[name] = doc
    return others


def resolve_fluency(
    cfg: EvalConfig, retain_model: str | None, opts: dict[str, Any] | None
) -> EvalConfig:
    """``eval.fluency_model`` made a model path (or None): "retain" is the retain model when
    there is one; a path of its own is checked before Ray starts."""
    out = cfg.with_fluency_model(retain_model, opts)
    if out.fluency_path is not None and out.fluency_path != retain_model:
        try:
            check_model(out.fluency_path, opts)
        except ModelError as exc:
            raise ConfigError(f"eval.fluency_model: {exc}") from None
    return out


def run_eval(cfg: EvalJobConfig, address: str | None = None) -> dict[str, Any]:
    """Evaluate ``cfg.model`` across Ray workers; writes metrics.json and report.html under
    ``cfg.out``. Returns the metrics.json document.

    The output path, the models, the dataset and the evaluated splits are checked before Ray
    starts; ``cfg.overwrite`` replaces only an earlier evaluation's output."""
    opts = cfg.storage_options
    storage.check_output(cfg.out, OUTPUT_KIND, opts, overwrite=cfg.overwrite)
    others = read_compare(cfg.compare, opts)
    dataset = Dataset(cfg.data, opts)
    plan_splits(dataset, cfg.eval)  # split names, roles, the columns the metrics need
    model = check_model(cfg.model, opts)
    if cfg.retain_model is not None:
        plan_splits(dataset, cfg.eval, purpose="reference")
        check_model(cfg.retain_model, opts)
    ecfg = resolve_fluency(cfg.eval, cfg.retain_model, opts)
    started = not ray.is_initialized()
    init_ray(address, cfg.scaling.num_cpus)
    try:
        reference = None
        if cfg.retain_model is not None:
            reference = compute_reference(
                cfg.retain_model,
                cfg.data,
                cfg.eval,
                cfg.scaling,
                cache_dir=cfg.cache_dir,
                storage_options=opts,
            )
        shards, _ = run_shards(cfg.model, cfg.data, ecfg, cfg.scaling, "metrics", opts)
    finally:
        if started:
            ray.shutdown()
    metrics = merge_shards(shards, ecfg, reference)
    doc = metrics_document(
        metrics,
        model_path=cfg.model,
        model_hash=model.hash,
        dataset=dataset,
        cfg=ecfg,
        retain_model_path=cfg.retain_model,
    )
    label = cfg.name or os.path.basename(str(cfg.model).rstrip("/")) or "model"
    with storage.publish_dir(
        cfg.out, opts, overwrite=cfg.overwrite, commit_last=("metrics.json",), kind=OUTPUT_KIND
    ) as staging:
        write_metrics(str(staging / "metrics.json"), doc)
        write_report(
            str(staging / "report.html"),
            {label: doc, **others},
            title=f"Unlearning evaluation: {label}",
        )
    return doc


def parser() -> argparse.ArgumentParser:
    """The job's command line (``unlearn eval`` and ``python -m jobs.eval``)."""
    p = argparse.ArgumentParser(
        prog="unlearn eval",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", help="YAML file with EvalJobConfig keys (local or s3://)")
    p.add_argument(
        "--preset",
        help="start from a benchmark's settings as open-unlearning runs them: tofu (200 new "
        "tokens, 512-token inputs, holdout MIAs) or muse (KnowMem, VerbMem, privleak as MUSE "
        "defines them); --config, flags and KEY=VALUE apply on top",
    )
    p.add_argument("--model", help="model directory (local or s3://)")
    p.add_argument("--data", help="dataset directory (local or s3://)")
    p.add_argument("--out", help="output directory (local or s3://)")
    p.add_argument(
        "--retain-model", help="model trained without the forget split (forget quality, privleak)"
    )
    p.add_argument("--workers", type=int, help="Ray workers (shards)")
    p.add_argument("--address", help="Ray cluster address; default: RAY_ADDRESS or a local Ray")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    p.add_argument("--cpus-per-worker", type=float)
    p.add_argument("--gpu", action="store_true", help="one GPU per worker")
    p.add_argument(
        "--cache-dir", help="retain reference cache (default ~/.cache/unlearn/retain_reference)"
    )
    p.add_argument("--name", help="the model's name in the report (default: directory name)")
    p.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="NAME=METRICS_JSON",
        help="another model's metrics.json to show in the report (repeatable)",
    )
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--storage-options", help="JSON object passed to the filesystem (s3fs)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    return p


def load_job_config(args: argparse.Namespace) -> EvalJobConfig:
    """``--config``, then the flags, then the dotted overrides, into one checked config."""
    flags = [
        f"{key}={json.dumps(getattr(args, flag))}"
        for flag, key in FLAGS.items()
        if getattr(args, flag) is not None
    ]
    for item in args.compare:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--compare {item!r} is not of the form NAME=path/to/metrics.json")
        flags.append(f"compare.{name}={json.dumps(path)}")
    if args.gpu:
        flags.append("scaling.use_gpu=true")
    if args.overwrite:
        flags.append("overwrite=true")
    if args.storage_options:
        try:
            options = json.loads(args.storage_options)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--storage-options is not valid JSON: {exc}") from None
        flags.append(f"storage_options={json.dumps(options)}")
    defaults = None
    if args.preset:
        from unlearn.eval.presets import load_preset

        defaults = {"eval": load_preset(args.preset)}
    return load_config(
        EvalJobConfig, args.config, [*flags, *args.overrides], shorthand="eval", defaults=defaults
    )


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, evaluate, print the headline numbers."""
    args = parser().parse_intermixed_args(argv)  # options and key=value in any order
    cfg = load_job_config(args)
    doc = run_eval(cfg, address=args.address)
    forget = cfg.eval.forget_split
    rouge = doc["splits"].get(forget, {}).get("rouge_l_recall")

    def fmt(v: float | None) -> str:
        return "null" if v is None else f"{v:.4g}"

    print(
        f"forget_quality={fmt(doc['forget_quality'])} model_utility={fmt(doc['model_utility'])} "
        f"privleak={fmt(doc['privleak'])} {forget}.rouge_l_recall={fmt(rouge)}"
    )
    print(f"wrote {cfg.out}/metrics.json and {cfg.out}/report.html")
    return 0


if __name__ == "__main__":
    sys.exit(run_command(main))
