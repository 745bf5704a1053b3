"""Exceptions raised for bad input, and the one error boundary every command goes through.

Library code raises these with the file, column, key or URL at fault in the message. The boundary
(``run_command``) also turns the failures a user can fix that other libraries raise (permissions,
missing files, bad encodings, S3 credentials and endpoints, corrupt parquet or safetensors files)
into the same one-line ``error: ...`` message with exit code 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import errno
from collections.abc import Callable

EXIT_ERROR = 2


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


class StorageError(UnlearnError, OSError):
    """A file or object store location cannot be read or written (permissions, credentials,
    endpoint); the message names the location and what to do."""


class RunFailedError(UnlearnError, RuntimeError):
    """A training run failed after it started; its run.json records the reason."""


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in str(text).splitlines() if ln.strip()]
    return lines[0] if lines else ""


def _one_line(text: str) -> str:
    return " ".join(ln.strip() for ln in str(text).splitlines() if ln.strip())


def _os_message(exc: OSError) -> str:
    where = exc.filename if exc.filename is not None else None
    if exc.filename2 is not None:
        where = f"{exc.filename} -> {exc.filename2}"
    if isinstance(exc, PermissionError):
        return (
            f"permission denied: {where or 'a file'}: "
            "check its permissions or choose another location"
        )
    if isinstance(exc, FileNotFoundError):
        return f"{where or 'a file'} does not exist"
    if isinstance(exc, IsADirectoryError):
        return f"{where} is a directory where a file was expected"
    if isinstance(exc, NotADirectoryError):
        return f"{where}: a part of this path is a file, not a directory"
    if exc.errno == errno.ENOSPC:
        return f"no space left on the device holding {where or 'the output'}: free some space"
    if exc.errno == errno.EROFS:
        return f"{where or 'the output'} is on a read-only file system: choose another location"
    reason = exc.strerror or _first_line(str(exc)) or type(exc).__name__
    return f"{where}: {reason}" if where else reason


def describe(exc: BaseException) -> str | None:
    """The one-line message for an expected failure, or None for a bug (shown with a traceback).

    Follows explicit causes (``raise ... from exc``), so an expected error wrapped by another
    layer still gets its own message; implicit contexts are not followed (a bug raised while
    handling an expected error stays a bug).
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        message = _describe_one(exc)
        if message is not None:
            return message
        exc = exc.__cause__
    return None


def _describe_one(exc: BaseException) -> str | None:
    if isinstance(exc, UnlearnError):
        return _one_line(str(exc)) or type(exc).__name__
    if isinstance(exc, UnicodeDecodeError):
        return (
            f"a file is not {exc.encoding} text (byte {exc.start}: {exc.reason}); "
            "rerun with --debug to see which one"
        )
    name = type(exc).__name__
    module = type(exc).__module__ or ""
    if module.startswith("botocore"):
        if name in ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"):
            return (
                f"S3: {_first_line(str(exc))}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                "(or AWS_PROFILE), or pass them in --storage-options"
            )
        if name in ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError"):
            return (
                f"S3: {_first_line(str(exc))}: check AWS_ENDPOINT_URL / --storage-options "
                "endpoint_url and that the server is up"
            )
        return f"S3: {_first_line(str(exc))}"
    if module.startswith("pyarrow") and isinstance(exc, Exception):
        return f"a data file is corrupt or not parquet: {_first_line(str(exc))}"
    if module.startswith("safetensors"):
        return f"a weights file is corrupt or not safetensors: {_first_line(str(exc))}"
    if isinstance(exc, OSError):
        return _os_message(exc)
    return None


def run_command(main: Callable[[list[str]], int | None], argv: list[str] | None = None) -> int:
    """Run a command's ``main(argv)``; an expected failure becomes one ``error: ...`` line, exit 2.

    Every entry point (the ``unlearn`` command and each ``python -m`` job) goes through here, so
    they all fail the same way. ``--debug`` anywhere in ``argv`` re-raises with the traceback.
    Failures that are bugs (no ``describe`` message) keep their traceback.
    """
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        return int(main(argv) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        message = describe(exc)
        if debug or message is None:
            raise
        print(f"error: {message}", file=sys.stderr)
        return EXIT_ERROR
