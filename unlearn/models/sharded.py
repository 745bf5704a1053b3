"""Sharded safetensors checkpoints, written and read one tensor at a time.

A model directory holds its weights as one ``model.safetensors`` or as shards
``model-0000i-of-0000n.safetensors`` plus ``model.safetensors.index.json`` (the Hugging Face
layout: ``{"metadata": {"total_size": bytes}, "weight_map": {tensor: file}}``), so plain
``AutoModelForCausalLM.from_pretrained`` loads either.

- ``ShardWriter`` writes a planned list of tensors (names, dtypes, shapes known in advance) as
  they arrive, one at a time: each shard's header is computed from the plan, then every
  tensor's bytes are streamed to disk and dropped. Nothing but the tensor in hand is ever held,
  so a ZeRO-3 export can gather one parameter at a time. The weights hash (``weights_hash``:
  sha256 over file names and bytes in name order) is computed while writing.
- ``Checkpoint`` maps every tensor of a local directory to its byte range, and reads any
  element range of a flattened tensor with one ``pread``: a ZeRO-3 rank reads exactly its
  partition of each parameter from the files, never the whole tensor.
- ``local_model_dir`` gives a local copy of an ``s3://`` model in a node-local cache keyed by
  its weights hash; a file lock makes the ranks of one node download it once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from unlearn import storage
from unlearn.errors import ModelError

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
COMPLETE = ".complete"  # marks a finished entry of the model cache

DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
CODES = {v: k for k, v in DTYPES.items()}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?)B?\s*", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """Bytes of a size written "5GB" (10^9), "500MiB" (2^20), "1e6" or an integer."""
    if isinstance(text, int):
        if text < 1:
            raise ValueError(f"size must be >= 1 byte, got {text}")
        return text
    m = _SIZE.fullmatch(str(text))
    if m is None:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a size (e.g. 5GB, 500MB, 2GiB)") from None
        if value < 1:
            raise ValueError(f"size must be >= 1 byte, got {text!r}")
        return int(value)
    number, unit, binary = float(m.group(1)), m.group(2).upper(), bool(m.group(3))
    power = " KMGT".index(unit) if unit else 0
    size = int(number * (1024 if binary else 1000) ** power)
    if size < 1:
        raise ValueError(f"size must be >= 1 byte, got {text!r}")
    return size


@dataclass(frozen=True)
class TensorSpec:
    """A tensor to be written: name, dtype and shape (known before its values are)."""

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        """Bytes of the tensor's data."""
        n = 1
        for d in self.shape:
            n *= d
        return n * torch.empty((), dtype=self.dtype).element_size()


def plan_shards(specs: list[TensorSpec], max_shard_bytes: int) -> list[list[TensorSpec]]:
    """Tensors in order, cut into shards of at most ``max_shard_bytes`` (a bigger tensor alone)."""
    shards: list[list[TensorSpec]] = [[]]
    size = 0
    for spec in specs:
        if shards[-1] and size + spec.nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(spec)
        size += spec.nbytes
    return shards if shards[0] else []


def shard_names(n: int) -> list[str]:
    """File names of ``n`` shards, in the Hugging Face pattern (one file: model.safetensors)."""
    if n == 1:
        return [SINGLE]
    return [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]


def _header(shard: list[TensorSpec], metadata: dict[str, str]) -> bytes:
    """The safetensors header of a shard: u64 length + JSON, padded to 8 bytes."""
    entries: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for spec in shard:
        entries[spec.name] = {
            "dtype": CODES[spec.dtype],
            "shape": list(spec.shape),
            "data_offsets": [offset, offset + spec.nbytes],
        }
        offset += spec.nbytes
    text = json.dumps(entries, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text


class ShardWriter:
    """Writes planned tensors into safetensors shards as they arrive (in plan order).

    ``add`` takes each tensor once, checks it against the plan, streams its bytes and keeps
    nothing; ``close`` checks every planned tensor came, writes the index (several shards) and
    returns the weights hash of the files, equal to ``unlearn.models.weights_hash(directory)``.
    ``single_name`` names the file when everything fits in one (``adapter_model.safetensors``
    for an adapter directory).
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        specs: list[TensorSpec],
        max_shard_bytes: int,
        metadata: dict[str, str] | None = None,
        single_name: str = SINGLE,
    ):
        if not specs:
            raise ValueError("no tensors to write")
        self.directory = Path(directory)
        self.shards = plan_shards(specs, max_shard_bytes)
        self.names = shard_names(len(self.shards))
        if len(self.shards) == 1:
            self.names = [single_name]
        self.metadata = {"format": "pt", **(metadata or {})}
        self._order = [(i, spec) for i, shard in enumerate(self.shards) for spec in shard]
        self._next = 0
        self._open = -1
        self._file: Any = None
        self._hash = hashlib.sha256()

    def _write(self, data: bytes | memoryview) -> None:
        self._file.write(data)
        self._hash.update(data)

    def add(self, name: str, tensor: torch.Tensor) -> None:
        """Write the next planned tensor's bytes (its name, dtype and shape must match the plan)."""
        if self._next >= len(self._order):
            raise ValueError(f"tensor {name!r} is not in the plan (all planned tensors written)")
        shard, spec = self._order[self._next]
        if spec.name != name:
            raise ValueError(f"expected tensor {spec.name!r} next, got {name!r}")
        if tensor.dtype != spec.dtype or tuple(tensor.shape) != spec.shape:
            raise ValueError(
                f"tensor {name!r} is {tensor.dtype} {tuple(tensor.shape)}, planned as "
                f"{spec.dtype} {spec.shape}"
            )
        if shard != self._open:  # files are written in name order, as weights_hash reads them
            self.abort()
            self._open = shard
            self._hash.update(self.names[shard].encode())
            self._file = (self.directory / self.names[shard]).open("wb")
            self._write(_header(self.shards[shard], self.metadata))
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        if flat.numel():
            self._write(memoryview(flat.view(torch.uint8).numpy()))
        self._next += 1

    def close(self) -> str:
        """Finish the last shard and write the index; returns the weights hash."""
        if self._next != len(self._order):
            missing = [spec.name for _, spec in self._order[self._next :]]
            raise ValueError(f"{len(missing)} planned tensors were never written: {missing[:3]}")
        self.abort()
        if len(self.shards) > 1:
            index = {
                "metadata": {"total_size": sum(spec.nbytes for _, spec in self._order)},
                "weight_map": {spec.name: self.names[i] for i, spec in self._order},
            }
            (self.directory / INDEX).write_text(json.dumps(index, indent=2, sort_keys=True))
        return self._hash.hexdigest()

    def abort(self) -> None:
        """Close the open file (on failure the caller discards the directory)."""
        if self._file is not None:
            self._file.close()
            self._file = None


@dataclass(frozen=True)
class Entry:
    """Where one tensor's bytes are: file, dtype, shape, absolute byte offset, byte length."""

    file: Path
    dtype: torch.dtype
    shape: tuple[int, ...]
    offset: int
    nbytes: int

    @property
    def numel(self) -> int:
        """Elements of the tensor."""
        return self.nbytes // torch.empty((), dtype=self.dtype).element_size()


def read_header(path: Path) -> dict[str, Entry]:
    """A safetensors file's tensors with absolute byte ranges; ModelError if it is damaged."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ModelError(f"{path} is not a safetensors file (shorter than its header)")
        n = int.from_bytes(head, "little")
        if n <= 0 or 8 + n > size:
            raise ModelError(f"{path} is not a safetensors file (header of {n} bytes, file {size})")
        try:
            header = json.loads(f.read(n))
        except ValueError:
            raise ModelError(f"{path} is corrupt: its safetensors header is not JSON") from None
    out: dict[str, Entry] = {}
    end = 0
    for name, e in header.items():
        if name == "__metadata__":
            continue
        try:
            begin, stop = (int(x) for x in e["data_offsets"])
            dtype = DTYPES[e["dtype"]]
            shape = tuple(int(d) for d in e["shape"])
        except (KeyError, TypeError, ValueError):
            raise ModelError(f"{path}: tensor {name!r} has a damaged header entry") from None
        out[name] = Entry(path, dtype, shape, 8 + n + begin, stop - begin)
        end = max(end, stop)
    if 8 + n + end != size:
        raise ModelError(
            f"{path} is truncated or corrupt: its header describes {8 + n + end} bytes, the "
            f"file has {size}"
        )
    return out


class Checkpoint:
    """The safetensors weights of a local model directory (one file, or an index and shards)."""

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        index = self.directory / INDEX
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
            except (ValueError, KeyError, TypeError):
                raise ModelError(f"{index} is not a valid safetensors index") from None
            files = sorted(set(weight_map.values()))
            missing = [f for f in files if not (self.directory / f).is_file()]
            if missing:
                raise ModelError(
                    f"{index} names shards that are not there: {', '.join(missing[:3])}"
                )
        else:
            files = sorted(p.name for p in self.directory.glob("*.safetensors"))
            weight_map = None
        if not files:
            raise ModelError(f"{self.directory} holds no *.safetensors weights")
        self.entries: dict[str, Entry] = {}
        for name in files:
            for tensor, entry in read_header(self.directory / name).items():
                if weight_map is not None and weight_map.get(tensor) != name:
                    continue
                self.entries[tensor] = entry
        if weight_map is not None:
            lost = sorted(set(weight_map) - set(self.entries))
            if lost:
                raise ModelError(f"{index} maps {lost[0]!r} to a shard that does not hold it")

    def read(self, name: str, start: int = 0, count: int | None = None) -> torch.Tensor:
        """Elements ``[start, start + count)`` of a tensor flattened, as a 1-D tensor of its
        stored dtype, read with one ``pread`` (only those bytes are read)."""
        e = self.entries[name]
        count = e.numel - start if count is None else count
        if start < 0 or count < 0 or start + count > e.numel:
            raise ValueError(f"range [{start}, {start + count}) is outside {name!r} ({e.numel})")
        item = torch.empty((), dtype=e.dtype).element_size()
        out = torch.empty(count * item, dtype=torch.uint8)
        if count:
            fd = os.open(e.file, os.O_RDONLY)
            try:
                view = memoryview(out.numpy())
                done = 0
                while done < len(view):
                    n = os.preadv(fd, [view[done:]], e.offset + start * item + done)
                    if n <= 0:
                        raise ModelError(f"{e.file} ended early reading {name!r}")
                    done += n
            finally:
                os.close(fd)
        return out.view(e.dtype)

    def tensor(self, name: str) -> torch.Tensor:
        """A whole tensor in its stored dtype and shape."""
        return self.read(name).reshape(self.entries[name].shape)


# --------------------------------------------------------------------------------------------
# Node-local cache of remote models.


def cache_root() -> Path:
    """``$UNLEARN_CACHE_DIR/models`` (default ``~/.cache/unlearn/models``)."""
    base = os.environ.get("UNLEARN_CACHE_DIR") or str(Path.home() / ".cache" / "unlearn")
    return Path(base) / "models"


def _remote_key(path: str, storage_options: dict[str, Any] | None) -> tuple[str, str | None]:
    """(cache key, weights hash the manifest records or None)."""
    from unlearn.models.io import MANIFEST

    manifest = storage.join(path, MANIFEST)
    if storage.exists(manifest, storage_options):
        try:
            digest = json.loads(storage.read_bytes(manifest, storage_options))["weights_sha256"]
        except (ValueError, KeyError, TypeError):
            raise ModelError(
                f"{manifest} records no weights_sha256: save the model again"
            ) from None
        return str(digest), str(digest)
    # No manifest (a model saved by another tool): key by the objects' names, sizes and ETags.
    fs, inner = storage.filesystem(path, storage_options)
    base = inner.rstrip("/")
    fs.invalidate_cache(base)
    listing = sorted(
        (info["name"][len(base) + 1 :], info.get("size"), str(info.get("ETag")))
        for info in fs.find(base, detail=True).values()
    )
    if not listing:
        raise ModelError(f"{path} holds no files: not a model directory")
    return "listing-" + hashlib.sha256(json.dumps(listing).encode()).hexdigest(), None


@contextlib.contextmanager
def _locked(lock: Path) -> Iterator[None]:
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # waits while another rank of this node downloads
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def local_model_dir(
    path: str | os.PathLike,
    storage_options: dict[str, Any] | None = None,
    root: str | os.PathLike | None = None,
) -> Path:
    """A local directory holding the model at ``path``: itself, or for ``s3://`` a node-local
    cache entry ``root/<weights hash>/`` (default ``cache_root()``).

    The first process of a node takes the entry's lock, downloads into a staging directory,
    checks the downloaded weights against the manifest's hash and renames the directory into
    place; the others wait on the lock and use it, so eight ranks of a node download once. An
    entry is used only when complete (its marker file exists); the same weights under another
    prefix share the entry.
    """
    if not storage.is_remote(path):
        local = Path(path)
        if not local.is_dir():
            raise ModelError(f"model directory {local} does not exist")
        return local
    from unlearn.models.io import weights_hash

    path = str(path)
    if not storage.exists(storage.join(path, "config.json"), storage_options):
        raise ModelError(f"{path} holds no config.json: not a (complete) model directory")
    key, expected = _remote_key(path, storage_options)
    root = Path(root) if root is not None else cache_root()
    dest = root / key
    if (dest / COMPLETE).is_file():
        return dest
    with _locked(root / f"{key}.lock"):
        if (dest / COMPLETE).is_file():
            return dest
        staging = root / f".{key}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            storage.download_dir(path, staging, storage_options)
            if expected is not None:
                actual = weights_hash(staging)
                if actual != expected:
                    raise ModelError(
                        f"{path}: the downloaded weights hash {actual[:16]} does not match the "
                        f"one its manifest records ({expected[:16]}): the weights were changed "
                        "after the model was saved"
                    )
            (staging / COMPLETE).write_text(json.dumps({"source": path, "key": key}))
            if dest.exists():  # an incomplete entry left by a killed download
                shutil.rmtree(dest)
            os.replace(staging, dest)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return dest
