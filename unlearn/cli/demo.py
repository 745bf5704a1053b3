"""``unlearn demo``: the end-to-end demo in jobs/demo.py (imported when run: it needs Ray)."""

from __future__ import annotations

import argparse
import importlib


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``demo`` (its arguments pass through to jobs.demo)."""
    p = sub.add_parser(
        "demo",
        help="synthetic data -> tiny model -> NPO vs GA -> evaluation verdict",
        add_help=False,
    )
    p.add_argument("job_args", nargs=argparse.REMAINDER)
    p.set_defaults(
        func=lambda args: int(importlib.import_module("jobs.demo").main(args.job_args) or 0)
    )
