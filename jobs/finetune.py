"""Fine-tune a model (the target on ``full``, or the retain-only model on ``retainXX``) on Ray Train.

ray job submit --working-dir . -- python -m jobs.finetune --config examples/finetune_tiny.yaml
unlearn finetune --config examples/finetune_tiny.yaml train.epochs=20
"""

from __future__ import annotations

import sys

from unlearn.errors import run_command

# the fine-tuning job sets these itself (a config naming another value is refused)
FIXED = {"method.name": "finetune"}


def main(argv: list[str] | None = None) -> int:
    """Parse ``--config FILE key=value ...`` and run the fine-tuning job."""
    from jobs.common import job_main

    return job_main("jobs.finetune", __doc__, argv, fixed=FIXED)


if __name__ == "__main__":
    sys.exit(run_command(main))
