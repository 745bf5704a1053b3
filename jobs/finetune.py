"""Fine-tune a model (the target on ``full``, or the retain-only model on ``retainXX``) on Ray Train.

ray job submit --working-dir . -- python -m jobs.finetune --config examples/finetune_tiny.yaml
unlearn finetune --config examples/finetune_tiny.yaml train.epochs=20
"""

from __future__ import annotations

import argparse
import json
import sys

from unlearn.config import load_config
from unlearn.engine.config import RunConfig


def main(argv: list[str] | None = None) -> int:
    """Parse ``--config FILE key=value ...`` and run the fine-tuning job."""
    parser = argparse.ArgumentParser(prog="jobs.finetune", description=__doc__)
    parser.add_argument("--config", help="YAML run config")
    parser.add_argument(
        "--address", help="Ray cluster address (default: RAY_ADDRESS or a local Ray)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace a finished run in output.dir"
    )
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.epochs=20")
    args = parser.parse_args(argv)
    overrides = ["method.name=finetune", *args.overrides] + (
        ["output.overwrite=true"] if args.overwrite else []
    )
    cfg = load_config(RunConfig, args.config, overrides)
    from jobs.common import run_training

    summary = run_training(cfg, address=args.address)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
