"""``unlearn eval``: the field's metrics on Ray workers, written as metrics.json and report.html."""

from __future__ import annotations

import argparse
import importlib

from unlearn.cli.common import storage_options_arg
from unlearn.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``eval`` command."""
    p = sub.add_parser(
        "eval",
        help="evaluate a model (forget quality, model utility, MIA, ...) on Ray",
        description="Evaluate MODEL on DATA across Ray workers; writes OUT/metrics.json and "
        "OUT/report.html. Trailing KEY=VALUE arguments override the eval config "
        "(e.g. forget_split=forget01 max_new_tokens=200).",
    )
    p.add_argument("--model", required=True, help="model directory (local or s3://)")
    p.add_argument("--data", required=True, help="dataset directory (local or s3://)")
    p.add_argument("--out", required=True, help="output directory (local or s3://)")
    p.add_argument(
        "--retain-model", help="model trained without the forget split (forget quality, privleak)"
    )
    p.add_argument("--config", help="YAML file with EvalConfig keys")
    p.add_argument("--workers", type=int, default=1, help="Ray workers (shards)")
    p.add_argument("--address", help="Ray cluster address; default: start a local Ray")
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all)")
    p.add_argument("--cpus-per-worker", type=float, default=1.0)
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
    p.add_argument("--storage-options")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    p.set_defaults(func=cmd_eval)


def cmd_eval(args: argparse.Namespace) -> int:
    """Run distributed evaluation and print the headline numbers."""
    from unlearn.config import load_config
    from unlearn.eval import EvalConfig

    cfg = load_config(EvalConfig, args.config, args.overrides)
    compare = {}
    for item in args.compare:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--compare {item!r} is not of the form NAME=path/to/metrics.json")
        compare[name] = path
    job = importlib.import_module("jobs.eval")  # Ray is imported here, never by the library
    doc = job.run_eval(
        args.model,
        args.data,
        args.out,
        retain_model=args.retain_model,
        cfg=cfg,
        workers=args.workers,
        address=args.address,
        num_cpus=args.num_cpus,
        cpus_per_worker=args.cpus_per_worker,
        use_gpu=args.gpu,
        cache_dir=args.cache_dir,
        name=args.name,
        compare=compare,
        storage_options=storage_options_arg(args.storage_options),
        overwrite=args.overwrite,
    )
    forget = cfg.forget_split
    rouge = doc["splits"].get(forget, {}).get("rouge_l_recall")

    def fmt(v: float | None) -> str:
        return "null" if v is None else f"{v:.4g}"

    print(
        f"forget_quality={fmt(doc['forget_quality'])} model_utility={fmt(doc['model_utility'])} "
        f"privleak={fmt(doc['privleak'])} {forget}.rouge_l_recall={fmt(rouge)}"
    )
    print(f"wrote {args.out}/metrics.json and {args.out}/report.html")
    return 0
