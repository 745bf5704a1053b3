"""Exceptions raised for bad input; each message names the file, column or key at fault."""

from __future__ import annotations

from collections.abc import Callable


class UnlearnError(Exception):
    """Base class of every error the platform raises on purpose."""


class DataError(UnlearnError, ValueError):
    """A dataset is missing, malformed or inconsistent."""


class ModelError(UnlearnError, ValueError):
    """A model directory is missing, unsafe (pickle weights) or inconsistent."""


class ConfigError(UnlearnError, ValueError):
    """A configuration key is unknown, mistyped or holds an impossible value."""


class OutputExistsError(UnlearnError, FileExistsError):
    """An output location already holds a finished result; refuse to overwrite it silently."""


def run_command(main: Callable[[list[str]], int | None], argv: list[str] | None = None) -> int:
    """Run a command's ``main(argv)``; an expected failure becomes one ``error: ...`` line, exit 2.

    Every entry point (the ``unlearn`` command and each ``python -m`` job) goes through here, so
    they all fail the same way. ``--debug`` anywhere in ``argv`` re-raises with the traceback.
    """
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        return int(main(argv) or 0)
    except UnlearnError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
