"""Local-or-S3 file access through fsspec, and atomic directory publication.

Every path the platform reads or writes may be a local path or ``s3://bucket/prefix``. S3 endpoint
and credentials come from the standard AWS environment variables (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL``) or from explicit
``storage_options`` (passed to ``s3fs.S3FileSystem``, e.g. ``{"endpoint_url": ...}``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec

from unlearn.errors import OutputExistsError


def is_remote(path: str | os.PathLike) -> bool:
    """True when ``path`` names an object store URL (``s3://...``) rather than a local path."""
    return "://" in str(path) and not str(path).startswith("file://")


def filesystem(
    path: str | os.PathLike, storage_options: dict[str, Any] | None = None
) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return ``(fs, path_within_fs)`` for a local path or URL."""
    options = dict(storage_options or {})
    if is_remote(path) and str(path).startswith("s3://"):
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if endpoint and "endpoint_url" not in options:
            options["endpoint_url"] = endpoint
    fs, inner = fsspec.core.url_to_fs(str(path), **options)
    return fs, inner


def join(base: str | os.PathLike, *parts: str) -> str:
    """Join path parts with ``/`` for URLs and the OS separator for local paths."""
    if is_remote(base):
        return "/".join([str(base).rstrip("/"), *[p.strip("/") for p in parts]])
    return str(Path(base, *parts))


def exists(path: str | os.PathLike, storage_options: dict[str, Any] | None = None) -> bool:
    """True when a file or directory exists at ``path``."""
    fs, inner = filesystem(path, storage_options)
    return fs.exists(inner)


def read_bytes(path: str | os.PathLike, storage_options: dict[str, Any] | None = None) -> bytes:
    """Read a whole file."""
    fs, inner = filesystem(path, storage_options)
    with fs.open(inner, "rb") as f:
        return f.read()


def write_bytes(
    path: str | os.PathLike, data: bytes, storage_options: dict[str, Any] | None = None
) -> None:
    """Write a whole file; locally through a temporary name and a rename, so it is never partial."""
    if not is_remote(path):
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
        tmp.write_bytes(data)
        os.replace(tmp, target)
        return
    fs, inner = filesystem(path, storage_options)
    with fs.open(inner, "wb") as f:  # S3 PUTs are atomic per object
        f.write(data)


@contextlib.contextmanager
def publish_dir(
    path: str | os.PathLike,
    storage_options: dict[str, Any] | None = None,
    *,
    overwrite: bool = False,
    commit_last: tuple[str, ...] = (),
) -> Iterator[Path]:
    """Yield a local staging directory whose content is published at ``path`` on success.

    Local targets are published by renaming the staging directory into place, so a reader sees
    either nothing or the whole result. S3 targets are uploaded file by file with the files named
    in ``commit_last`` (the manifest readers require) uploaded last, so an interrupted upload never
    looks complete. On error nothing is published and the staging directory is removed.
    """
    target_exists = exists(path, storage_options)
    if target_exists and not overwrite:
        raise OutputExistsError(
            f"{path} already exists; pass overwrite=True (--overwrite) to replace it"
        )
    if not is_remote(path):
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            yield staging
            if target.exists():
                trash = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
                os.replace(target, trash)
                os.replace(staging, target)
                shutil.rmtree(trash, ignore_errors=True)
            else:
                os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return
    staging = Path(tempfile.mkdtemp(prefix="unlearn-upload-"))
    try:
        yield staging
        fs, inner = filesystem(path, storage_options)
        if target_exists:
            fs.rm(inner, recursive=True)
        files = sorted(p for p in staging.rglob("*") if p.is_file())
        files.sort(key=lambda p: p.relative_to(staging).as_posix() in commit_last)
        for p in files:
            fs.put_file(str(p), f"{inner.rstrip('/')}/{p.relative_to(staging).as_posix()}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def download_dir(
    path: str | os.PathLike, local: str | os.PathLike, storage_options: dict[str, Any] | None = None
) -> Path:
    """Copy a remote directory's files into ``local`` (created) and return it."""
    fs, inner = filesystem(path, storage_options)
    local = Path(local)
    local.mkdir(parents=True, exist_ok=True)
    for remote in fs.find(inner):
        rel = remote[len(inner.rstrip("/")) + 1 :]
        dest = local / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        fs.get_file(remote, str(dest))
    return local
