"""Unlearn a forget split from a model on Ray Train (any method in unlearn.methods.METHODS).

ray job submit --working-dir . -- python -m jobs.unlearn --config examples/npo_tiny.yaml
unlearn run --config examples/npo_tiny.yaml method.beta=0.2
"""

from __future__ import annotations

import argparse
import json
import sys

from unlearn.config import load_config
from unlearn.engine.config import RunConfig
from unlearn.errors import ConfigError


def main(argv: list[str] | None = None) -> int:
    """Parse ``--config FILE key=value ...`` and run the unlearning job."""
    parser = argparse.ArgumentParser(prog="jobs.unlearn", description=__doc__)
    parser.add_argument("--config", help="YAML run config")
    parser.add_argument(
        "--address", help="Ray cluster address (default: RAY_ADDRESS or a local Ray)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a finished run in output.dir"
    )
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. method.beta=0.2")
    args = parser.parse_args(argv)
    cfg = load_config(
        RunConfig,
        args.config,
        args.overrides + (["output.overwrite=true"] if args.overwrite else []),
    )
    if cfg.method.name == "finetune":
        raise ConfigError(
            "method.name: finetune is not an unlearning method; use `unlearn finetune`"
        )
    from jobs.common import run_training

    summary = run_training(cfg, address=args.address)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
