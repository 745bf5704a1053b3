"""Local-or-S3 file access through fsspec, and safe publication of output directories.

Every path the platform reads or writes may be a local path or ``s3://bucket/prefix``. S3 endpoint
and credentials come from the standard AWS environment variables (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL``) or from explicit
``storage_options`` (passed to ``s3fs.S3FileSystem``, e.g. ``{"endpoint_url": ...}``).

**Publishing an output** (``publish_dir``, ``publish_staged``). Every tool names the kind of output
it writes (an ``OutputKind``: the files that mark it, e.g. ``dataset.json``, and the names it
writes). A path is replaced only when it holds this tool's own output of the same kind and
``overwrite`` is set; anything else (a user's directory, a file, another kind of output, or our
output with a stranger's file beside it) is refused with a message naming what is there. The new
output is complete before the old one goes: locally the staging directory and the old output swap
places in one atomic ``renameat2(RENAME_EXCHANGE)`` (or two renames where the system has none);
on S3 the old objects are first copied to a backup prefix, then the new ones are uploaded (the
files readers require last) and the backup is deleted. A writer killed at any point leaves either
the old output, the new one, or (S3 only, and the local two-rename fallback) a backup that the next
write to that path restores. Staging directories, backups and temporary files carry their
writer's host, process id and start time in their name; one whose process is gone is removed (or
restored) by the next writer of the same path.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fnmatch
import os
import re
import shutil
import socket
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import fsspec

from unlearn.errors import OutputExistsError, StorageError

# files rewritten when a staged output is moved to its final path (they record their own paths)
RELOCATE_SUFFIXES = (".json", ".jsonl", ".yaml", ".yml", ".html", ".txt")
RELOCATE_MAX_BYTES = 64 << 20
# a staging directory or backup whose writer runs on another host is removed only when this old
FOREIGN_STALE_S = 30 * 24 * 3600
MARK = ".unlearn-"  # hidden siblings: .NAME.unlearn-{new,old,tmp}-TIME-PID-RAND-HOST


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
    try:
        fs, inner = fsspec.core.url_to_fs(str(path), **options)
    except (ImportError, ValueError, TypeError) as exc:
        raise StorageError(f"{path}: cannot open this location: {exc}") from None
    return fs, inner


def join(base: str | os.PathLike, *parts: str) -> str:
    """Join path parts with ``/`` for URLs and the OS separator for local paths."""
    if is_remote(base):
        return "/".join([str(base).rstrip("/"), *[p.strip("/") for p in parts]])
    return str(Path(base, *parts))


def _parent_and_name(path: str | os.PathLike) -> tuple[str, str]:
    text = str(path).rstrip("/")
    if is_remote(text):
        scheme, _, rest = text.partition("://")
        if "/" not in rest:
            raise StorageError(f"{path}: an output needs a prefix inside the bucket")
        parent, name = rest.rsplit("/", 1)
        return f"{scheme}://{parent}", name
    p = Path(text).absolute()
    return str(p.parent), p.name


def sibling(path: str | os.PathLike, name: str) -> str:
    """The path ``name`` in the same directory (or prefix) as ``path``."""
    parent, _ = _parent_and_name(path)
    return join(parent, name)


@contextlib.contextmanager
def io_errors(path: str | os.PathLike, action: str) -> Iterator[None]:
    """Translate permission, credential and endpoint failures into StorageError naming ``path``."""
    try:
        yield
    except StorageError:
        raise
    except PermissionError as exc:
        raise StorageError(
            f"permission denied {action} {path}: check its permissions (or the bucket policy) "
            "or choose another location"
        ) from exc
    except Exception as exc:
        module = type(exc).__module__ or ""
        if not module.startswith("botocore"):
            raise
        name = type(exc).__name__
        if "Credential" in name:
            hint = (
                "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or pass "
                "key/secret in --storage-options"
            )
        elif "Endpoint" in name or "Timeout" in name or "Connection" in name:
            hint = (
                "check AWS_ENDPOINT_URL / --storage-options endpoint_url and that the server is up"
            )
        else:
            hint = "check the bucket name, region and credentials"
        detail = str(exc).splitlines()[0] if str(exc) else name
        raise StorageError(f"cannot reach {path} while {action} it: {detail}; {hint}") from exc


def exists(path: str | os.PathLike, storage_options: dict[str, Any] | None = None) -> bool:
    """True when a file or directory exists at ``path``."""
    with io_errors(path, "checking"):
        fs, inner = filesystem(path, storage_options)
        return fs.exists(inner)


def read_bytes(path: str | os.PathLike, storage_options: dict[str, Any] | None = None) -> bytes:
    """Read a whole file."""
    with io_errors(path, "reading"):
        fs, inner = filesystem(path, storage_options)
        if not is_remote(path) and Path(path).is_dir():
            raise StorageError(f"{path} is a directory where a file was expected")
        with fs.open(inner, "rb") as f:
            return f.read()


def write_bytes(
    path: str | os.PathLike, data: bytes, storage_options: dict[str, Any] | None = None
) -> None:
    """Write a whole file; locally through a temporary name and a rename, so it is never partial."""
    with io_errors(path, "writing"):
        if not is_remote(path):
            target = Path(path)
            if target.is_dir():
                raise StorageError(f"{path} is a directory: cannot write a file there")
            target.parent.mkdir(parents=True, exist_ok=True)
            _clean_stale_local(target, kinds=("tmp",))
            tmp = target.with_name(_hidden_name(target.name, "tmp"))
            try:
                tmp.write_bytes(data)
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
            return
        fs, inner = filesystem(path, storage_options)
        with fs.open(inner, "wb") as f:  # S3 PUTs are atomic per object
            f.write(data)


def download_dir(
    path: str | os.PathLike, local: str | os.PathLike, storage_options: dict[str, Any] | None = None
) -> Path:
    """Copy a remote directory's files into ``local`` (created) and return it."""
    with io_errors(path, "downloading"):
        fs, inner = filesystem(path, storage_options)
        local = Path(local)
        local.mkdir(parents=True, exist_ok=True)
        for remote in fs.find(inner):
            rel = remote[len(inner.rstrip("/")) + 1 :]
            dest = local / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(remote, str(dest))
    return local


# ---------------------------------------------------------------------------------------------
# Hidden siblings: staging directories, backups, temporary files, each named after its writer.

_HOST = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname() or "host")


def _token() -> str:
    return f"{int(time.time())}-{os.getpid()}-{uuid.uuid4().hex[:8]}-{_HOST}"


def _hidden_name(name: str, role: str) -> str:
    return f".{name}{MARK}{role}-{_token()}"


_HIDDEN = re.compile(
    r"^(?P<role>new|old|tmp)-(?P<t>\d+)-(?P<pid>\d+)-(?P<rand>[0-9a-f]{8})-(?P<host>.+)$"
)


def _hidden_base(name: str) -> str | None:
    """``X`` for a hidden sibling ``.X.unlearn-ROLE-...`` of ``X``, else None."""
    if not name.startswith(".") or MARK not in name:
        return None
    base, _, rest = name[1:].rpartition(MARK)
    return base if base and _HIDDEN.match(rest) else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stale(match: re.Match) -> bool:
    """True when the writer of a hidden sibling is gone (same host, dead process) or it is ancient."""
    if match["host"] == _HOST and int(match["pid"]) != os.getpid():
        if not _pid_alive(int(match["pid"])):
            return True
    return time.time() - int(match["t"]) > FOREIGN_STALE_S


def _hidden_siblings(names: list[str], name: str) -> list[tuple[str, re.Match]]:
    prefix = f".{name}{MARK}"
    out = []
    for n in names:
        if n.startswith(prefix):
            m = _HIDDEN.match(n[len(prefix) :])
            if m:
                out.append((n, m))
    return out


def _clean_stale_local(target: Path, kinds: tuple[str, ...] = ("new", "old", "tmp")) -> None:
    """Remove what killed writers of ``target`` left beside it; restore a backup if the target
    itself is gone (a writer killed between its two renames)."""
    parent = target.parent
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for n, m in sorted(_hidden_siblings(names, target.name), key=lambda x: int(x[1]["t"])):
        if m["role"] not in kinds or not _stale(m):
            continue
        p = parent / n
        if m["role"] == "old" and not target.exists() and not target.is_symlink():
            with contextlib.suppress(OSError):
                os.rename(p, target)  # the old output comes back
            continue  # never delete a backup while its output is missing
        with contextlib.suppress(OSError):
            shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


@contextlib.contextmanager
def local_tempdir(purpose: str) -> Iterator[Path]:
    """A private temporary directory (``unlearn-PURPOSE-...`` in the system temp dir), removed on
    exit; ones left by killed processes of this host are removed when the next one is made."""
    base = Path(tempfile.gettempdir())
    _clean_stale_local(base / f"unlearn-{purpose}", kinds=("tmp",))
    path = base / _hidden_name(f"unlearn-{purpose}", "tmp")
    path.mkdir(mode=0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# Output kinds: telling this tool's own output from anything else.


@dataclass(frozen=True)
class OutputKind:
    """What one tool writes at an output path, so that ``--overwrite`` replaces only that.

    ``signature``: files that must all be present (and pass ``validate``) for a directory to be
    this kind of output; ``entries``: glob patterns of every top-level name it writes (anything
    else inside is someone else's and blocks replacement); ``nested``: kinds whose outputs it may
    hold as subdirectories under any name (a demo's runs). ``validate(files)`` gets the signature
    files' bytes and returns None, or why they are not ours.
    """

    name: str
    signature: tuple[str, ...]
    entries: tuple[str, ...]
    nested: tuple[OutputKind, ...] = ()
    validate: Callable[[dict[str, bytes]], str | None] | None = field(default=None, compare=False)

    def owns(self, name: str) -> bool:
        """True when a top-level entry ``name`` is one this kind writes."""
        return any(fnmatch.fnmatchcase(name, pat) for pat in self.entries)


@dataclass
class Found:
    """What ``inspect_output`` found at a path."""

    state: str  # "absent" | "empty" | "ours" | "foreign"
    why: str = ""  # foreign: why it is not this kind's output
    names: list[str] = field(default_factory=list)
    strangers: list[str] = field(default_factory=list)  # foreign: names beside our own output
    is_file: bool = False


def _list_names(path: str, storage_options: dict[str, Any] | None) -> tuple[bool, list[str]] | None:
    if not is_remote(path):
        p = Path(path)
        if not p.exists() and not p.is_symlink():
            return None
        if not p.is_dir():
            return False, []
        return True, sorted(os.listdir(p))
    fs, inner = filesystem(path, storage_options)
    fs.invalidate_cache(inner)
    if not fs.exists(inner):
        return None
    if fs.isfile(inner):
        return False, []
    base = inner.rstrip("/")
    names = sorted(
        {p.rstrip("/")[len(base) + 1 :].split("/", 1)[0] for p in fs.ls(base, detail=False)} - {""}
    )
    return True, names


def inspect_output(
    path: str | os.PathLike, kind: OutputKind, storage_options: dict[str, Any] | None = None
) -> Found:
    """Whether ``path`` is absent, an empty directory, this kind's output, or something else."""
    path = str(path)
    with io_errors(path, "inspecting"):
        listed = _list_names(path, storage_options)
        if listed is None:
            return Found("absent")
        is_dir, names = listed
        if not is_dir:
            return Found("foreign", f"it is a file, not a {kind.name} directory", is_file=True)
        if not names:
            return Found("empty")
        missing = [s for s in kind.signature if s not in names]
        if missing:
            return Found("foreign", f"it has no {missing[0]}", names)
        if kind.validate is not None:
            files = {s: read_bytes(join(path, s), storage_options) for s in kind.signature}
            reason = kind.validate(files)
            if reason is not None:
                return Found("foreign", reason, names)
        strangers = []
        for n in names:
            base = _hidden_base(n)  # our own staging or temporary file for one of its entries
            if kind.owns(n) or (base is not None and kind.owns(base)):
                continue
            sub = join(path, n)
            if any(inspect_output(sub, k, storage_options).state == "ours" for k in kind.nested):
                continue
            strangers.append(n)
        if strangers:
            return Found("foreign", "", names, strangers)
        return Found("ours", names=names)


def _a(name: str) -> str:
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name}"


def _some(names: list[str], limit: int = 3) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_output(
    path: str | os.PathLike,
    kind: OutputKind,
    storage_options: dict[str, Any] | None = None,
    *,
    overwrite: bool = False,
    flag: str = "--overwrite",
) -> bool:
    """Refuse an output path unless it is free, or holds this kind's output and ``overwrite`` is
    set. Returns True when an existing output will be replaced. Call it before any work starts.

    What killed writers of ``path`` left is cleaned up first (``recover``)."""
    recover(path, kind, storage_options)
    found = inspect_output(path, kind, storage_options)
    if found.state in ("absent", "empty"):
        return False
    if found.is_file:
        raise OutputExistsError(
            f"{path} is a file, not a {kind.name} directory: choose another location"
        )
    if found.strangers:
        them = "it" if len(found.strangers) == 1 else "them"
        raise OutputExistsError(
            f"{path} holds {_some(found.strangers)} beside {_a(kind.name)} written by unlearn; "
            f"replacing it would delete {them}: move {them} away or choose another location"
        )
    if found.state == "foreign":
        holds = f"holds {_some(found.names)}" if found.names else "exists"
        raise OutputExistsError(
            f"{path} {holds}, which is not {_a(kind.name)} written by unlearn ({found.why}); "
            f"{flag} only replaces this tool's own {kind.name} output: choose another location "
            "or move those files away yourself"
        )
    if not overwrite:
        raise OutputExistsError(
            f"{path} already holds {_a(kind.name)}; pass {flag} to replace it or choose another "
            "location"
        )
    return True


def recover(
    path: str | os.PathLike, kind: OutputKind, storage_options: dict[str, Any] | None = None
) -> None:
    """Clean up after writers of ``path`` that were killed: remove their staging directories and
    temporary files, and put back an old output whose replacement never completed."""
    with io_errors(path, "recovering"):
        if is_remote(path):
            _clean_stale_remote(str(path), kind, storage_options)
        else:
            _clean_stale_local(Path(path).absolute())


def _generic_kind(commit_last: tuple[str, ...], names: list[str]) -> OutputKind:
    """For writers that name no kind: the commit files mark it, and it owns what it writes now."""
    return OutputKind("output", tuple(commit_last), tuple(sorted({*names, *commit_last})))


# ---------------------------------------------------------------------------------------------
# Publication.

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False where the system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    rc = fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(a), None, str(b))


def _swap_local(staging: Path, target: Path) -> None:
    """Put ``staging`` at ``target``; the old ``target`` is removed only once the new one is there."""
    if not target.exists():
        os.rename(staging, target)
        return
    if _exchange(staging, target):
        shutil.rmtree(staging, ignore_errors=True)  # it now holds the old output
        return
    old = target.with_name(_hidden_name(target.name, "old"))
    os.rename(target, old)
    try:
        os.rename(staging, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _make_staging_local(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    _clean_stale_local(target)
    staging = target.with_name(_hidden_name(target.name, "new"))
    staging.mkdir(mode=0o777)  # the umask applies, as for any directory the user creates
    return staging


def _relocate_local(root: Path, old: str, new: str) -> None:
    for p in root.rglob("*"):
        if p.is_file() and p.suffix in RELOCATE_SUFFIXES and p.stat().st_size <= RELOCATE_MAX_BYTES:
            data = p.read_bytes()
            if old.encode() in data:
                p.write_bytes(data.replace(old.encode(), new.encode()))


def _remote_files(fs: Any, inner: str) -> list[str]:
    base = inner.rstrip("/")
    fs.invalidate_cache(base)
    return sorted(p[len(base) + 1 :] for p in fs.find(base))


def _clean_stale_remote(path: str, kind: OutputKind, storage_options: dict | None) -> None:
    parent, name = _parent_and_name(path)
    fs, pinner = filesystem(parent, storage_options)
    _, tinner = filesystem(path, storage_options)
    fs.invalidate_cache(pinner)
    try:
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(pinner, detail=False)]
    except FileNotFoundError:
        return
    for n, m in _hidden_siblings(names, name):
        if not _stale(m):
            continue
        hidden = f"{pinner.rstrip('/')}/{n}"
        if m["role"] == "old":
            complete = all(fs.exists(f"{tinner}/{s}") for s in kind.signature)
            if not complete:  # a writer died mid-replacement: the old output comes back
                if fs.exists(tinner):
                    fs.rm(tinner, recursive=True)
                fs.copy(hidden, tinner, recursive=True)
        fs.rm(hidden, recursive=True)


def _publish_remote(
    put: Callable[[str, str], None],
    files: list[str],
    path: str,
    kind: OutputKind,
    commit_last: tuple[str, ...],
    storage_options: dict | None,
) -> None:
    """Upload ``files`` (relative names; ``put(rel, dest_inner)`` writes one) at ``path``, keeping
    a backup of an old output until the new one is complete."""
    fs, inner = filesystem(path, storage_options)
    inner = inner.rstrip("/")
    backup = None
    old_files: list[str] = []
    if fs.exists(inner):
        old_files = _remote_files(fs, inner)
        _, bname = _parent_and_name(path)
        _, backup = filesystem(sibling(path, _hidden_name(bname, "old")), storage_options)
        fs.copy(inner, backup, recursive=True)
        # the old output stops looking complete before any of its files is replaced
        for name in dict.fromkeys([*kind.signature, *commit_last]):
            if name in old_files:
                fs.rm_file(f"{inner}/{name}")
    last = set(commit_last) | set(kind.signature)
    for rel in sorted(files, key=lambda r: (r in last, r)):
        put(rel, f"{inner}/{rel}")
    stale = [f"{inner}/{r}" for r in old_files if r not in set(files)]
    if stale:
        fs.rm(stale)
    if backup is not None:
        fs.rm(backup, recursive=True)


@contextlib.contextmanager
def publish_dir(
    path: str | os.PathLike,
    storage_options: dict[str, Any] | None = None,
    *,
    overwrite: bool = False,
    commit_last: tuple[str, ...] = (),
    kind: OutputKind | None = None,
) -> Iterator[Path]:
    """Yield a local staging directory whose content is published at ``path`` on success.

    ``path`` must be free (absent or an empty directory), or hold ``kind``'s output with
    ``overwrite`` set (see ``check_output``); without a ``kind``, an output holding the
    ``commit_last`` files and no name the new output lacks. The new output is complete before the
    old one is removed (module docstring). S3 uploads put the files named in ``commit_last`` (the
    files readers require) last, so an interrupted upload never looks complete. On error nothing
    is published and the staging directory is removed.
    """
    path = str(path)
    # without a kind, the commit files mark the output and the final check (below, once the new
    # output's names are known) refuses an old output holding names the new one lacks
    check_kind = kind or _generic_kind(commit_last, ["*"])
    check_output(path, check_kind, storage_options, overwrite=overwrite)
    with io_errors(path, "writing"):
        if not is_remote(path):
            target = Path(path).absolute()
            staging = _make_staging_local(target)
            try:
                yield staging
                final_kind = kind or _generic_kind(commit_last, sorted(os.listdir(staging)))
                check_output(target, final_kind, overwrite=overwrite)  # nothing new appeared
                _swap_local(staging, target)
            finally:
                if staging.exists():
                    shutil.rmtree(staging, ignore_errors=True)
            return
        _clean_stale_remote(path, check_kind, storage_options)
        with local_tempdir("upload") as staging:
            yield staging
            files = sorted(
                p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file()
            )
            final_kind = kind or _generic_kind(commit_last, sorted(os.listdir(staging)))
            check_output(path, final_kind, storage_options, overwrite=overwrite)
            fs, _ = filesystem(path, storage_options)
            _publish_remote(
                lambda rel, dest: fs.put_file(str(staging / rel), dest),
                files,
                path,
                final_kind,
                commit_last,
                storage_options,
            )


def staging_path(path: str | os.PathLike, storage_options: dict[str, Any] | None = None) -> str:
    """A fresh hidden sibling of ``path`` to build an output in place of an old one (locally the
    directory is created); hand it to ``publish_staged`` when the output is complete."""
    path = str(path)
    _, name = _parent_and_name(path)
    staged = sibling(path, _hidden_name(name, "new"))
    with io_errors(path, "preparing"):
        if not is_remote(path):
            target = Path(path).absolute()
            _clean_stale_local(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            Path(staged).mkdir(mode=0o777)
    return staged


def discard_staged(staged: str, storage_options: dict[str, Any] | None = None) -> None:
    """Remove a staging location made by ``staging_path`` (a run that failed)."""
    with io_errors(staged, "removing"):
        fs, inner = filesystem(staged, storage_options)
        if fs.exists(inner):
            fs.rm(inner, recursive=True)


def publish_staged(
    staged: str,
    path: str | os.PathLike,
    kind: OutputKind,
    storage_options: dict[str, Any] | None = None,
    *,
    overwrite: bool = True,
    commit_last: tuple[str, ...] = (),
) -> None:
    """Move a complete output built at ``staged`` (``staging_path``) to ``path``, replacing this
    kind's old output there (checked again now). Text files that recorded the staging path
    (run.json, config.yaml, metrics ...) are rewritten to name ``path``."""
    path = str(path)
    with io_errors(path, "publishing"):
        check_output(path, kind, storage_options, overwrite=overwrite)
        if not is_remote(path):
            target, source = Path(path).absolute(), Path(staged)
            _relocate_local(source, str(source), str(target))
            _swap_local(source, target)
            return
        fs, sinner = filesystem(staged, storage_options)
        _, tinner = filesystem(path, storage_options)
        sinner, tinner = sinner.rstrip("/"), tinner.rstrip("/")
        replacements = [(str(staged).rstrip("/"), path.rstrip("/")), (sinner, tinner)]

        def put(rel: str, dest: str) -> None:
            src = f"{sinner}/{rel}"
            if rel.endswith(RELOCATE_SUFFIXES) and fs.size(src) <= RELOCATE_MAX_BYTES:
                data = fs.cat_file(src)
                for old, new in replacements:
                    data = data.replace(old.encode(), new.encode())
                fs.pipe_file(dest, data)
            else:
                fs.copy(src, dest)

        _clean_stale_remote(path, kind, storage_options)
        _publish_remote(put, _remote_files(fs, sinner), path, kind, commit_last, storage_options)
        fs.rm(sinner, recursive=True)
