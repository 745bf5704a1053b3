"""``unlearn plan``: the memory planner (``unlearn.engine.planner``) for a run config."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``plan`` command."""
    p = sub.add_parser(
        "plan",
        help="per-GPU memory of a run (parameters, gradients, optimizer, reference, "
        "activations): does it fit, which lever to pull first",
    )
    p.add_argument("--config", required=True, help="the run's YAML (local or s3://)")
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument(
        "--gpus-per-node",
        type=int,
        help="GPUs per node (default: the config's scaling.num_workers)",
    )
    p.add_argument("--gpu-memory-gb", type=float, help="memory of one GPU in GB (10^9 bytes)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides of the config")
    p.set_defaults(func=cmd_plan)


def cmd_plan(args: argparse.Namespace) -> int:
    """Plan the run's memory and print it."""
    from unlearn.config import load_config
    from unlearn.engine.config import RunConfig
    from unlearn.engine.planner import plan, render
    from unlearn.errors import ConfigError

    cfg = load_config(RunConfig, args.config, args.overrides)
    for flag, value in (("--nodes", args.nodes), ("--gpus-per-node", args.gpus_per_node)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be >= 1, got {value}")
    if args.gpu_memory_gb is not None and args.gpu_memory_gb <= 0:
        raise ConfigError(f"--gpu-memory-gb must be > 0, got {args.gpu_memory_gb}")
    per_node = args.gpus_per_node or cfg.scaling.num_workers
    memory = int(args.gpu_memory_gb * 1e9) if args.gpu_memory_gb else None
    result = plan(cfg, args.nodes * per_node, memory)
    print(json.dumps(result) if args.json else render(result))
    return 0
