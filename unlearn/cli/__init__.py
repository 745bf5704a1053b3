"""The ``unlearn`` command line: one subcommand group per module in this package.

Each module named in ``GROUPS`` defines ``register(subparsers)``, adding its commands with a
``func(args) -> int`` default. Heavy imports (torch, transformers) happen inside the commands, so
``unlearn --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from unlearn.errors import UnlearnError

# commands whose arguments go to a job's own parser (jobs/*.py main)
PASSTHROUGH = ("finetune", "run", "demo")
GROUPS = ("data", "model", "train", "eval", "guard", "demo")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every registered command group."""
    parser = argparse.ArgumentParser(prog="unlearn", description="Machine unlearning for LLMs.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in GROUPS:
        importlib.import_module(f"unlearn.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``unlearn`` console script; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in PASSTHROUGH:
            if argv[0] == "demo":
                return int(importlib.import_module("jobs.demo").main(argv[1:]) or 0)
            from unlearn.cli.train import run_job

            return run_job(argv[0], argv[1:])
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except UnlearnError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
