"""Load, check and save Hugging Face causal LMs (safetensors only) from a local directory or S3.

A model's identity is the SHA-256 of its safetensors files (``weights_hash``), never a number a
file merely claims: ``model_hash`` hashes the weights themselves (locally, or the objects' bytes on
S3) and checks the ``unlearn_model.json`` manifest against them. ``check_model`` validates a model
directory without loading its weights (config, safetensors headers against the architecture,
tokenizer, vocabulary), so a command can refuse a bad model before any expensive work starts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unlearn import storage
from unlearn.errors import ModelError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
MANIFEST = "unlearn_model.json"
WEIGHTS_INDEX = "model.safetensors.index.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
MIN_POSITIONS = 8  # a prompt and an answer need at least this many positions


def _is_manifest(files: dict[str, bytes]) -> str | None:
    try:
        raw = json.loads(files[MANIFEST])
    except ValueError:
        return f"its {MANIFEST} is not JSON"
    if not isinstance(raw, dict) or "weights_sha256" not in raw:
        return f"its {MANIFEST} records no weights_sha256"
    return None


# What ``--overwrite`` may replace: a model directory this tool saved (config, weights, tokenizer).
KIND = storage.OutputKind(
    "model",
    ("config.json", MANIFEST),
    (
        "config.json",
        MANIFEST,
        "generation_config.json",
        "*.safetensors",
        WEIGHTS_INDEX,
        "tokenizer*.json",
        "tokenizer.model",
        "special_tokens_map.json",
        "added_tokens.json",
        "vocab.json",
        "merges.txt",
        "chat_template.jinja",
        "chat_template.json",
        "adapter_config.json",  # a LoRA adapter saved beside its weights
    ),
    validate=_is_manifest,
)


@contextlib.contextmanager
def _local_dir(
    path: str | os.PathLike, storage_options: dict[str, Any] | None, *, weights: bool = True
) -> Iterator[Path]:
    """The model directory on local disk: itself, or a temporary download of an S3 prefix
    (without the safetensors files unless ``weights``), removed afterwards."""
    if not storage.is_remote(path):
        local = Path(path)
        if not local.exists():
            raise ModelError(f"model directory {local} does not exist")
        if not local.is_dir():
            raise ModelError(f"{local} is a file, not a model directory")
        yield local
        return
    if not storage.exists(storage.join(str(path), "config.json"), storage_options):
        raise ModelError(f"{path} holds no config.json: not a (complete) model directory")
    with storage.local_tempdir("model") as tmp:
        if weights:
            storage.download_dir(path, tmp, storage_options)
        else:
            for name in _remote_names(path, storage_options):
                if not name.endswith(".safetensors") and "/" not in name:
                    data = storage.read_bytes(storage.join(str(path), name), storage_options)
                    (tmp / name).write_bytes(data)
        yield tmp


def _remote_names(path: str | os.PathLike, storage_options: dict[str, Any] | None) -> list[str]:
    fs, inner = storage.filesystem(path, storage_options)
    base = inner.rstrip("/")
    fs.invalidate_cache(base)
    return sorted(p[len(base) + 1 :] for p in fs.find(base))


def check_model_dir(local: Path, where: str, names: list[str] | None = None) -> None:
    """Refuse directories without config.json or without safetensors weights (pickle is unsafe).

    ``names``: the directory's file names when its weights were not downloaded (S3)."""
    if not (local / "config.json").is_file():
        raise ModelError(f"{where} holds no config.json: not a Hugging Face model directory")
    names = [p.name for p in local.iterdir()] if names is None else names
    if not any(n.endswith(".safetensors") for n in names):
        pickles = [n for n in names if n.endswith(PICKLE_SUFFIXES)]
        if pickles:
            raise ModelError(
                f"{where} holds only pickle weights ({', '.join(sorted(pickles))}); they can run "
                "arbitrary code when loaded. Convert them to safetensors first "
                "(model.save_pretrained(dir, safe_serialization=True) in a trusted environment)"
            )
        raise ModelError(f"{where} holds no *.safetensors weights")


def _load_tokenizer_from(local: Path, where: str) -> Any:
    from transformers import AutoTokenizer

    if not any((local / n).is_file() for n in TOKENIZER_FILES):
        raise ModelError(
            f"{where} holds no tokenizer ({' / '.join(TOKENIZER_FILES)}): save the tokenizer "
            "beside the model (tokenizer.save_pretrained(dir))"
        )
    try:
        tok = AutoTokenizer.from_pretrained(str(local))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{where}: the tokenizer cannot be loaded: {exc}") from None
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok


def load_tokenizer(path: str | os.PathLike, storage_options: dict[str, Any] | None = None) -> Any:
    """Load the tokenizer saved beside a model (local or S3)."""
    with _local_dir(path, storage_options, weights=False) as local:
        return _load_tokenizer_from(local, str(path))


def load_model(
    path: str | os.PathLike,
    *,
    dtype: str | None = None,
    storage_options: dict[str, Any] | None = None,
    with_tokenizer: bool = True,
) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` from a local directory or ``s3://`` prefix; safetensors only.

    A model downloaded from S3 is checked against its manifest (the downloaded bytes are hashed).
    """
    import torch
    from transformers import AutoModelForCausalLM

    with _local_dir(path, storage_options) as local:
        check_model_dir(local, str(path))
        if storage.is_remote(path):
            _verify_manifest(str(path), weights_hash(local), _read_manifest(path, storage_options))
        torch_dtype = getattr(torch, dtype) if dtype else None
        try:
            model = AutoModelForCausalLM.from_pretrained(
                str(local), dtype=torch_dtype, use_safetensors=True
            )
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelError(f"{path}: the model cannot be loaded: {exc}") from None
        tokenizer = _load_tokenizer_from(local, str(path)) if with_tokenizer else None
    return model, tokenizer


# --------------------------------------------------------------------------------------------
# Identity: the hash of the weights' bytes.

_HASH_MEMO: dict[tuple, str] = {}


def weights_hash(directory: str | os.PathLike) -> str:
    """SHA-256 over a local model directory's safetensors files (names and bytes, sorted by name):
    the model's identity."""
    files = sorted(Path(directory).glob("*.safetensors"))
    stamp = tuple(
        (p.name, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
        for p in files
        for st in [p.stat()]
    )
    key = ("local", str(Path(directory).resolve()), stamp)
    if key in _HASH_MEMO:
        return _HASH_MEMO[key]
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode())
        with p.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    _HASH_MEMO[key] = h.hexdigest()
    return _HASH_MEMO[key]


def remote_weights_hash(path: str, storage_options: dict[str, Any] | None = None) -> str:
    """``weights_hash`` of a model on S3, from the objects' bytes (streamed, nothing kept on disk).

    Remembered for this process under the objects' ETags and sizes, which change with the bytes.
    """
    fs, inner = storage.filesystem(path, storage_options)
    base = inner.rstrip("/")
    fs.invalidate_cache(base)
    infos = sorted(
        (info for info in fs.ls(base, detail=True) if info["name"].endswith(".safetensors")),
        key=lambda info: info["name"].rsplit("/", 1)[-1],
    )
    stamp = tuple(
        (i["name"].rsplit("/", 1)[-1], i.get("ETag"), i.get("size") or i.get("Size")) for i in infos
    )
    key = ("remote", path, stamp)
    if key in _HASH_MEMO:
        return _HASH_MEMO[key]
    h = hashlib.sha256()
    for info in infos:
        h.update(info["name"].rsplit("/", 1)[-1].encode())
        with fs.open(info["name"], "rb", block_size=8 << 20) as f:
            for chunk in iter(lambda f=f: f.read(8 << 20), b""):
                h.update(chunk)
    _HASH_MEMO[key] = h.hexdigest()
    return _HASH_MEMO[key]


def files_hash(path: str | os.PathLike, storage_options: dict[str, Any] | None = None) -> str:
    """SHA-256 over a model directory's other files (config, tokenizer, templates: names and
    bytes), everything but the weights (``weights_hash``) and the manifest. Numbers computed
    with a model depend on these too."""
    h = hashlib.sha256()
    with storage.io_errors(path, "hashing"):
        if storage.is_remote(path):
            names = [n for n in _remote_names(path, storage_options) if "/" not in n]
        else:
            names = sorted(p.name for p in Path(path).iterdir() if p.is_file())
        for name in names:
            if name.endswith(".safetensors") or name == MANIFEST:
                continue
            h.update(name.encode() + b"\0")
            h.update(
                hashlib.sha256(
                    storage.read_bytes(storage.join(str(path), name), storage_options)
                ).digest()
            )
    return h.hexdigest()


def state_dict_hash(model: Any) -> str:
    """SHA-256 over a loaded model's parameters and buffers (names, dtypes, shapes, bytes)."""
    import torch

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _read_manifest(
    path: str | os.PathLike, storage_options: dict[str, Any] | None
) -> dict[str, Any] | None:
    manifest = storage.join(str(path), MANIFEST)
    if not storage.exists(manifest, storage_options):
        return None
    try:
        raw = json.loads(storage.read_bytes(manifest, storage_options))
    except ValueError as exc:
        raise ModelError(f"{manifest} is not valid JSON ({exc}): save the model again") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("weights_sha256"), str):
        raise ModelError(f"{manifest} records no weights_sha256: save the model again")
    return raw


def _verify_manifest(where: str, actual: str, manifest: dict[str, Any] | None) -> None:
    if manifest is not None and manifest["weights_sha256"] != actual:
        raise ModelError(
            f"{where}: the weights hash {actual[:16]} does not match the one {MANIFEST} records "
            f"({manifest['weights_sha256'][:16]}): the weights were changed after the model was "
            f"saved. Save the model again, or delete {MANIFEST} to use the weights as they are"
        )


def _actual_hash(path: str | os.PathLike, storage_options: dict[str, Any] | None) -> str:
    if storage.is_remote(path):
        digest = remote_weights_hash(str(path), storage_options)
        if digest == hashlib.sha256().hexdigest():
            raise ModelError(f"{path} holds no *.safetensors weights")
        return digest
    local = Path(path)
    if not local.is_dir():
        raise ModelError(f"model directory {local} does not exist")
    if not any(local.glob("*.safetensors")):
        raise ModelError(f"{local} holds no *.safetensors weights")
    return weights_hash(local)


def model_hash(path: str | os.PathLike, storage_options: dict[str, Any] | None = None) -> str:
    """A model directory's identity: the hash of its safetensors bytes, checked against its
    manifest (a mismatch is a ModelError naming both hashes)."""
    with storage.io_errors(path, "hashing"):
        actual = _actual_hash(path, storage_options)
        _verify_manifest(str(path), actual, _read_manifest(path, storage_options))
    return actual


def model_identity(
    path: str | os.PathLike, storage_options: dict[str, Any] | None = None
) -> str | None:
    """The weights hash a model's manifest records, once checked against the weights themselves;
    None for models saved elsewhere (no manifest)."""
    manifest = _read_manifest(path, storage_options)
    if manifest is None:
        return None
    return model_hash(path, storage_options)


# --------------------------------------------------------------------------------------------
# Checking a model directory without loading its weights.


@dataclass
class ModelInfo:
    """What ``check_model`` found: the weights hash and the numbers other checks need."""

    path: str
    hash: str
    model_type: str
    vocab_size: int  # rows of the embedding
    tokenizer_size: int | None  # tokens of the tokenizer (None when not checked)
    num_layers: int | None
    max_positions: int | None
    tensors: dict[str, list[int]] = field(default_factory=dict, repr=False)
    config: Any = field(default=None, repr=False)  # the transformers config


def _safetensors_header(read: Any, size: int, where: str) -> dict[str, Any]:
    """Parse and check a safetensors header: valid JSON, offsets inside the file."""
    head = read(0, 8)
    if len(head) < 8:
        raise ModelError(f"{where} is not a safetensors file (shorter than its header)")
    n = int.from_bytes(head, "little")
    if n <= 0 or 8 + n > size:
        raise ModelError(f"{where} is not a safetensors file (header length {n} of {size} bytes)")
    try:
        header = json.loads(read(8, n))
    except ValueError:
        raise ModelError(f"{where} is corrupt: its safetensors header is not JSON") from None
    if not isinstance(header, dict):
        raise ModelError(f"{where} is corrupt: its safetensors header is not a mapping")
    end = 0
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and "shape" in entry):
            raise ModelError(f"{where} is corrupt: tensor {name!r} has no shape / data_offsets")
        end = max(end, int(offsets[1]))
    if 8 + n + end != size:
        raise ModelError(
            f"{where} is truncated or corrupt: its header describes {8 + n + end} bytes, the "
            f"file has {size}"
        )
    return {k: v for k, v in header.items() if k != "__metadata__"}


def _weights_headers(
    path: str | os.PathLike, storage_options: dict[str, Any] | None
) -> dict[str, dict[str, Any]]:
    """file name -> safetensors header, for every ``*.safetensors`` file of a model directory."""
    out: dict[str, dict[str, Any]] = {}
    if storage.is_remote(path):
        fs, inner = storage.filesystem(path, storage_options)
        base = inner.rstrip("/")
        for info in fs.ls(base, detail=True):
            name = info["name"].rsplit("/", 1)[-1]
            if not name.endswith(".safetensors"):
                continue
            size = int(info.get("size") or 0)
            with fs.open(info["name"], "rb") as f:

                def read(offset: int, n: int, f: Any = f) -> bytes:
                    f.seek(offset)
                    return f.read(n)

                out[name] = _safetensors_header(read, size, storage.join(str(path), name))
        return out
    for p in sorted(Path(path).glob("*.safetensors")):
        size = p.stat().st_size
        with p.open("rb") as f:

            def read(offset: int, n: int, f: Any = f) -> bytes:
                f.seek(offset)
                return f.read(n)

            out[p.name] = _safetensors_header(read, size, str(p))
    return out


def check_model(
    path: str | os.PathLike,
    storage_options: dict[str, Any] | None = None,
    *,
    tokenizer: bool = True,
) -> ModelInfo:
    """Check a model directory without loading its weights; raise ModelError naming the problem.

    Checks: config.json is a causal LM config; the safetensors files are complete and hold every
    tensor the architecture needs, with the right shapes; the tokenizer is present and loads, and
    its vocabulary fits the embedding; the manifest matches the weights (``model_hash``).
    The file checks come first: a missing or truncated model fails before transformers loads.
    """
    where = str(path)
    with (
        storage.io_errors(where, "reading"),
        _local_dir(path, storage_options, weights=False) as local,
    ):
        names = _remote_names(path, storage_options) if storage.is_remote(path) else None
        check_model_dir(local, where, names)
        try:
            json.loads((local / "config.json").read_bytes())
        except ValueError as exc:
            raise ModelError(f"{where}/config.json is not a valid model config: {exc}") from None
        headers = _weights_headers(path, storage_options)
        tensors = {
            name: list(entry["shape"])
            for header in headers.values()
            for name, entry in header.items()
        }
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        try:
            config = AutoConfig.from_pretrained(str(local))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelError(f"{where}/config.json is not a valid model config: {exc}") from None
        try:
            with torch.device("meta"):
                skeleton = AutoModelForCausalLM.from_config(config)
        except (ValueError, KeyError, TypeError, RuntimeError) as exc:
            raise ModelError(f"{where}: config.json does not describe a causal LM: {exc}") from None
        tied = set()
        if getattr(config, "tie_word_embeddings", False):
            tied = set(getattr(skeleton, "_tied_weights_keys", None) or ())
        for name, t in skeleton.state_dict().items():
            if name not in tensors:
                if name in tied:
                    continue
                raise ModelError(
                    f"{where}: the weights lack tensor {name!r} that its config.json "
                    f"({config.model_type}) needs; the safetensors files do not match the config"
                )
            if list(t.shape) != tensors[name]:
                raise ModelError(
                    f"{where}: tensor {name!r} has shape {tensors[name]} in the weights but "
                    f"{list(t.shape)} in config.json"
                )
        embedding = skeleton.get_input_embeddings().weight.shape[0]
        positions = getattr(config, "max_position_embeddings", None)
        if positions is not None and positions < MIN_POSITIONS:
            raise ModelError(
                f"{where}: config.json has max_position_embeddings={positions}; a model needs at "
                f"least {MIN_POSITIONS} positions for a prompt and an answer"
            )
        tok_size = None
        if tokenizer:
            tok = _load_tokenizer_from(local, where)
            tok_size = len(tok)
            if tok_size > embedding:
                raise ModelError(
                    f"{where}: the tokenizer has {tok_size} tokens but the model's embedding has "
                    f"{embedding} rows: token ids past {embedding - 1} would fail. Use the "
                    "tokenizer the model was trained with"
                )
        del skeleton
    digest = model_hash(path, storage_options)
    return ModelInfo(
        path=where,
        hash=digest,
        model_type=str(config.model_type),
        vocab_size=int(embedding),
        tokenizer_size=tok_size,
        num_layers=getattr(config, "num_hidden_layers", None),
        max_positions=positions,
        tensors=tensors,
        config=config,
    )


def save_model(
    model: Any,
    tokenizer: Any,
    path: str | os.PathLike,
    *,
    storage_options: dict[str, Any] | None = None,
    overwrite: bool = False,
    metadata: dict[str, Any] | None = None,
    state_dict: dict[str, Any] | None = None,
) -> str:
    """Save model + tokenizer in HF layout (safetensors) at ``path``; returns the weights hash.

    Written to a staging directory first and published with ``storage.publish_dir``: a local
    target appears whole; on S3 the ``config.json`` and manifest are uploaded last, so a partial
    upload is never loadable. ``overwrite`` replaces only a model this tool saved.
    ``state_dict`` overrides the model's own (e.g. weights gathered from ZeRO-3 shards).
    """
    with storage.publish_dir(
        path,
        storage_options,
        overwrite=overwrite,
        commit_last=("config.json", MANIFEST),
        kind=KIND,
    ) as staging:
        model.save_pretrained(str(staging), safe_serialization=True, state_dict=state_dict)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(staging))
        digest = weights_hash(staging)
        manifest = {"weights_sha256": digest, **(metadata or {})}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return digest


@contextlib.contextmanager
def publish_model(
    path: str | os.PathLike,
    storage_options: dict[str, Any] | None = None,
    *,
    overwrite: bool = False,
    commit_last: tuple[str, ...] = ("config.json", MANIFEST),
) -> Iterator[Path]:
    """A staging directory published as a model directory at ``path`` (``storage.publish_dir``:
    whole or not at all; on S3 the ``commit_last`` files, which readers require, go last;
    ``overwrite`` replaces only a model this tool saved)."""
    with storage.publish_dir(
        path, storage_options, overwrite=overwrite, commit_last=commit_last, kind=KIND
    ) as staging:
        yield staging


def write_manifest(directory: Path, digest: str, metadata: dict[str, Any] | None = None) -> None:
    """The model's manifest: its weights hash (over every safetensors file: all shards) + metadata."""
    manifest = {"weights_sha256": digest, **(metadata or {})}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
