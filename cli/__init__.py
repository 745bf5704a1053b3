"""The ``unlearn`` command line: a thin shell over the library (``unlearn/``) and the Ray jobs
(``jobs/``).

Library command groups (``data``, ``model``, ``guard``, ``serve``) are modules of this package, each with
``register(subparsers)`` adding commands whose ``func(args) -> int`` does the work. Job commands
(``finetune``, ``run``, ``eval``, ``demo``, ``sweep``) hand their arguments to the job module's own
``main(argv)``, so ``unlearn eval ...`` and ``python -m jobs.eval ...`` accept the same arguments;
``submit`` and ``jobs`` (``jobs/submit.py``) send those jobs to a Ray cluster and manage them.
Heavy imports (torch, transformers, Ray) happen inside the commands: ``unlearn --help`` stays fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from cli import data, guard, model, plan, serve
from unlearn.errors import run_command

GROUPS = (data, model, guard, serve, plan)


def _finetune(argv: list[str]) -> int:
    from jobs import finetune

    return finetune.main(argv)


def _run(argv: list[str]) -> int:
    from jobs import unlearn

    return unlearn.main(argv)


def _eval(argv: list[str]) -> int:
    from jobs import eval as eval_job

    return eval_job.main(argv)


def _demo(argv: list[str]) -> int:
    from jobs import demo

    return demo.main(argv)


def _sweep(argv: list[str]) -> int:
    from jobs import sweep

    return sweep.main(argv)


def _submit(argv: list[str]) -> int:
    from jobs import submit

    return submit.submit_main(argv)


def _jobs(argv: list[str]) -> int:
    from jobs import submit

    return submit.jobs_main(argv)


# command -> (the job's main, one line of help); each job parses its own arguments
JOBS: dict[str, tuple[Callable[[list[str]], int], str]] = {
    "finetune": (_finetune, "fine-tune a model on Ray Train (target or retain-only model)"),
    "run": (_run, "run an unlearning method on Ray Train"),
    "eval": (_eval, "evaluate a model (forget quality, model utility, MIA, ...) on Ray"),
    "demo": (_demo, "synthetic data -> tiny model -> NPO vs GA -> evaluation verdict"),
    "sweep": (_sweep, "Ray Tune sweep of unlearning runs: Pareto front of forgetting vs utility"),
    "submit": (_submit, "submit a job (finetune, run, eval, sweep, demo) to a Ray cluster"),
    "jobs": (_jobs, "jobs on a Ray cluster: list, status, logs, stop"),
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the library command groups (job commands parse their own)."""
    parser = argparse.ArgumentParser(
        prog="unlearn",
        description="Machine unlearning for LLMs. `unlearn COMMAND --help` for a command's options; "
        "--debug shows the traceback of a failure.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    for name, (_, help_text) in JOBS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def dispatch(argv: list[str]) -> int:
    """Run one command: a job's own ``main`` or a library command's ``func``."""
    if argv and argv[0] in JOBS:
        return JOBS[argv[0]][0](argv[1:])
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``unlearn`` console script; returns the process exit code."""
    return run_command(dispatch, argv)
