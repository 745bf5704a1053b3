"""Unlearn a forget split from a model on Ray Train (any method in unlearn.methods.METHODS).

ray job submit --working-dir . -- python -m jobs.unlearn --config examples/npo_tiny.yaml
unlearn run --config examples/npo_tiny.yaml method.beta=0.2
"""

from __future__ import annotations

import sys

from unlearn.engine.config import RunConfig
from unlearn.errors import ConfigError, run_command


def check(cfg: RunConfig) -> None:
    """Only unlearning methods run here."""
    if cfg.method.name == "finetune":
        raise ConfigError(
            "method.name: finetune is not an unlearning method; use `unlearn finetune`"
        )


def main(argv: list[str] | None = None) -> int:
    """Parse ``--config FILE key=value ...`` and run the unlearning job."""
    from jobs.common import job_main

    return job_main("jobs.unlearn", __doc__, argv, check=check)


if __name__ == "__main__":
    sys.exit(run_command(main))
