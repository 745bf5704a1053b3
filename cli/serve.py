"""``unlearn serve``: unlearned models behind the guard over an OpenAI-compatible API (Ray Serve).

    unlearn serve --model npo=runs/demo/npo/model --guard npo=runs/demo/guard \\
        --api-keys-file keys.txt [--model ID=PATH ...] [--port 8000] [--host 127.0.0.1] \\
        [--engine transformers|vllm]

Every model id needs a guard index (``--guard ID=INDEX``; a bare ``--guard INDEX`` binds every
model that has none of its own). Everything is checked before Ray starts. The command writes the
same Serve config as ``serve/config.yaml`` (``--print-config`` shows it) and deploys it as ``serve
run`` does; ``kill -HUP PID`` re-reads every guard index and its guard.yaml in place (no restart,
no dropped requests); Ctrl-C stops.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from unlearn.errors import ConfigError, DataError, ModelError

ENGINES = ("transformers", "vllm")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``serve`` command."""
    p = sub.add_parser(
        "serve",
        help="serve unlearned models behind the guard (OpenAI-compatible API on Ray Serve)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model",
        action="append",
        required=True,
        metavar="ID=PATH",
        help="a model id and its Hugging Face directory (local or s3://); repeatable",
    )
    p.add_argument(
        "--guard",
        action="append",
        required=True,
        metavar="ID=INDEX",
        help="the guard index in front of model ID (INDEX alone: every model without one)",
    )
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback)")
    p.add_argument("--api-keys-file", help="one API key per line (default: $UNLEARN_API_KEYS)")
    p.add_argument("--engine", choices=ENGINES, default="transformers")
    p.add_argument(
        "--metrics-port", type=int, help="Prometheus /metrics on 127.0.0.1 (default: --port + 1)"
    )
    p.add_argument("--audit-log", help="append a JSON line per guard block to this file")
    p.add_argument("--address", help="Ray cluster address (default: start a local Ray)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="serving config override, e.g. limits.max_prompt_chars=8000 or model_replicas=2",
    )
    p.add_argument(
        "--guard-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="guard config override for every model, e.g. output.cov=0.5 or embeddings=false",
    )
    p.add_argument("--storage-options", help="JSON object passed to the filesystem (s3fs)")
    p.add_argument(
        "--print-config", action="store_true", help="print the Serve config (YAML) and exit"
    )
    p.set_defaults(func=cmd_serve)


def _pairs(values: list[str], flag: str) -> list[tuple[str | None, str]]:
    out = []
    for text in values:
        key, sep, value = text.partition("=")
        if not sep:
            out.append((None, text))
        elif not key or not value:
            raise ConfigError(f"{flag} {text!r}: expected ID=PATH")
        else:
            out.append((key, value))
    return out


def _local(path: str) -> str:
    """Absolute local paths (replicas do not share this shell's working directory)."""
    from unlearn import storage

    return path if storage.is_remote(path) else str(Path(path).expanduser().resolve())


def build_configs(args: argparse.Namespace) -> tuple[Any, Any]:
    """``(ServeConfig, GuardsConfig)`` from the flags, every path and key checked."""
    import json

    from cli.common import storage_options_arg
    from serve.config import guards_config, load_api_keys, parse_serve_config
    from unlearn import storage
    from unlearn.config import apply_overrides, parse_override

    opts = storage_options_arg(args.storage_options)
    models: dict[str, str] = {}
    for mid, path in _pairs(args.model, "--model"):
        if mid is None:
            raise ConfigError(f"--model {path!r}: expected ID=PATH (the id clients send as model)")
        if mid in models:
            raise ConfigError(f"--model {mid} is given twice")
        if not storage.exists(storage.join(path, "config.json"), opts):
            raise ModelError(f"--model {mid}={path}: no config.json there (not a model directory)")
        models[mid] = _local(path)
    guards: dict[str, str] = {}
    default = None
    for mid, index in _pairs(args.guard, "--guard"):
        if mid is None:
            default = index
            continue
        if mid not in models:
            raise ConfigError(
                f"--guard {mid}={index}: {mid!r} is not a --model id ({', '.join(models)})"
            )
        guards[mid] = index
    for mid in models:
        if mid not in guards:
            if default is None:
                raise ConfigError(
                    f"model {mid!r} has no guard: pass --guard {mid}=INDEX (build one with "
                    "`unlearn guard build --data DATA --forget-split SPLIT --out INDEX`)"
                )
            guards[mid] = default
    for mid, index in guards.items():
        if not storage.exists(storage.join(index, "manifest.json"), opts):
            raise DataError(
                f"--guard {mid}={index}: no manifest.json there (not a guard index; build one "
                "with `unlearn guard build`)"
            )
    keys_file = _local(args.api_keys_file) if args.api_keys_file else None
    load_api_keys(keys_file)  # fails now, naming the file or variable, if there are no keys
    if not 0 < args.port < 65536:
        raise ConfigError(f"--port {args.port} is not a TCP port")
    raw: dict[str, Any] = {
        "models": models,
        "engine": args.engine,
        "api_keys_file": keys_file,
        "metrics_port": args.metrics_port if args.metrics_port is not None else args.port + 1,
        "audit_log": _local(args.audit_log) if args.audit_log else None,
    }
    if opts:
        raw["engine_options"] = {"storage_options": opts}
    cfg = parse_serve_config(apply_overrides(raw, args.set))
    overrides = {}
    for text in args.guard_set:
        path, value = parse_override(text)
        overrides[".".join(path)] = value
    bindings = {
        mid: {"index": _local(index), "overrides": dict(overrides)} for mid, index in guards.items()
    }
    g = guards_config({"guards": bindings, "storage_options": opts})
    # every binding's guard config must load (thresholds, overrides) before anything starts
    from serve.ingress import GUARD_CONFIG_FILE
    from unlearn.config import load_config
    from unlearn.guard import GuardConfig

    for mid, b in g.guards.items():
        path = storage.join(b.index, GUARD_CONFIG_FILE)
        path = path if storage.exists(path, opts) else None
        try:
            load_config(
                GuardConfig,
                path,
                [f"{k}={json.dumps(v)}" for k, v in b.overrides.items()],
                storage_options=opts,
            )
        except ConfigError as exc:
            raise ConfigError(f"guard config of model {mid!r}: {exc}") from None
    return cfg, g


def cmd_serve(args: argparse.Namespace) -> int:
    """Check, deploy, print the endpoint; SIGHUP reloads guards, Ctrl-C stops."""
    import yaml

    from serve.app import deploy, deploy_config, reload_guards, warm_up

    cfg, guards = build_configs(args)
    config = deploy_config(cfg, guards, host=args.host, port=args.port)
    if args.print_config:
        print(yaml.safe_dump(config, sort_keys=False), end="")
        return 0
    if cfg.engine == "vllm" and not args.address:
        from serve.engines import import_vllm

        import_vllm()  # the local replicas would need it: say so now
    from ray import serve

    from jobs.common import init_ray

    init_ray(args.address)
    try:
        deploy(config)
        loaded = warm_up(list(cfg.models))
        base = f"http://{args.host}:{args.port}"
        print(
            f"serving {', '.join(cfg.models)} ({cfg.engine}) on {base}/v1 behind the guard; "
            f"models loaded in {', '.join(f'{m} {s:.1f}s' for m, s in loaded.items())}\n"
            f"  metrics: http://127.0.0.1:{cfg.metrics_port}/metrics   health: {base}/healthz\n"
            f"  kill -HUP {os.getpid()} reloads the guard indexes in place; Ctrl-C stops",
            flush=True,
        )
        return _wait(cfg, guards, args, reload_guards)
    finally:
        serve.shutdown()


def _wait(cfg: Any, guards: Any, args: argparse.Namespace, reload_guards: Any) -> int:
    """Block until SIGINT/SIGTERM; on SIGHUP re-deploy the guards with the next generation."""
    stop = threading.Event()
    hup = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: hup.set())
    generation = guards.generation
    while not stop.is_set():
        if hup.wait(0.5):
            hup.clear()
            generation += 1
            try:
                reload_guards(
                    cfg, replace(guards, generation=generation), host=args.host, port=args.port
                )
                print(f"guards reloaded (generation {generation})", flush=True)
            except Exception as exc:  # noqa: BLE001 - keep serving with the guards in place
                print(
                    f"error: guard reload failed, still serving the previous guards: {exc}",
                    file=sys.stderr,
                    flush=True,
                )
    print("stopping", flush=True)
    return 0
