"""``unlearn finetune`` and ``unlearn run``: the Ray Train jobs in jobs/ (imported when run, so the
library itself never imports Ray). Their arguments pass through to the job's own parser."""

from __future__ import annotations

import argparse
import importlib

JOBS = {
    "finetune": ("jobs.finetune", "fine-tune a model on Ray Train (target or retain-only model)"),
    "run": ("jobs.unlearn", "run an unlearning method on Ray Train"),
}


def run_job(name: str, argv: list[str]) -> int:
    """Hand ``argv`` to the job module's ``main``."""
    return int(importlib.import_module(JOBS[name][0]).main(argv) or 0)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``finetune`` and ``run`` (listed in --help; ``main`` passes their arguments through)."""
    for name, (_, help_text) in JOBS.items():
        p = sub.add_parser(name, help=help_text, add_help=False)
        p.add_argument(
            "job_args", nargs=argparse.REMAINDER, help="--config FILE [--overwrite] [key=value ...]"
        )
        p.set_defaults(func=lambda args, name=name: run_job(name, args.job_args))
