"""The dataset format: a directory of ``<split>.parquet`` files plus ``dataset.json``.

Columns (TOFU-compatible): ``id`` (string, unique), ``entity`` (string), ``question``, ``answer``,
``paraphrased_answer`` (nullable), ``paraphrased_question`` (nullable), ``perturbed_answers``
(list<string>, nullable). ``dataset.json`` records the generator/importer, seed, split sizes, a
content hash per split, and which forget split pairs with which retain and holdout split. The
directory may be local or ``s3://bucket/prefix``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from unlearn import storage
from unlearn.errors import DataError

FORMAT_VERSION = 1
INFO_FILE = "dataset.json"


def _is_dataset_info(files: dict[str, bytes]) -> str | None:
    try:
        raw = json.loads(files[INFO_FILE])
    except ValueError:
        return f"its {INFO_FILE} is not JSON"
    if not isinstance(raw, dict) or not isinstance(raw.get("splits"), dict):
        return f"its {INFO_FILE} is not a dataset description (no 'splits')"
    return None


# What ``--overwrite`` may replace: a directory holding dataset.json and split files only.
KIND = storage.OutputKind(
    "dataset", (INFO_FILE,), (INFO_FILE, "*.parquet"), validate=_is_dataset_info
)

SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("entity", pa.string(), nullable=False),
        pa.field("question", pa.string(), nullable=False),
        pa.field("answer", pa.string(), nullable=False),
        pa.field("paraphrased_answer", pa.string()),
        pa.field("paraphrased_question", pa.string()),
        pa.field("perturbed_answers", pa.list_(pa.string())),
    ]
)
COLUMNS = tuple(SCHEMA.names)
REQUIRED = ("id", "entity", "question", "answer")


def _type_ok(actual: pa.DataType, expected: pa.DataType) -> bool:
    if pa.types.is_list(expected) or pa.types.is_large_list(expected):
        return (pa.types.is_list(actual) or pa.types.is_large_list(actual)) and _type_ok(
            actual.value_type, expected.value_type
        )
    if pa.types.is_string(expected):
        return (
            pa.types.is_string(actual)
            or pa.types.is_large_string(actual)
            or pa.types.is_null(actual)
        )
    return actual == expected


def validate_table(table: pa.Table, where: str) -> pa.Table:
    """Check columns, types, nulls, emptiness and id uniqueness; return the table in SCHEMA."""
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise DataError(
            f"{where}: missing column(s) {', '.join(missing)} (expected {', '.join(COLUMNS)})"
        )
    for f in SCHEMA:
        actual = table.schema.field(f.name).type
        if not _type_ok(actual, f.type):
            raise DataError(f"{where}: column {f.name!r} has type {actual}, expected {f.type}")
    if table.schema != SCHEMA:
        try:
            table = table.select(list(COLUMNS)).cast(SCHEMA, safe=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise DataError(f"{where}: columns do not fit the dataset schema: {exc}") from None
    if table.num_rows == 0:
        raise DataError(f"{where}: split is empty (0 rows)")
    for name in REQUIRED:
        nulls = table.column(name).null_count
        if nulls:
            raise DataError(
                f"{where}: column {name!r} has {nulls} null value(s); it must be set on every row"
            )
    ids = table.column("id").to_pylist()
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dup = next(i for i in ids if i in seen or seen.add(i))
        raise DataError(f"{where}: duplicate id {dup!r} in column 'id'")
    return table


def to_table(rows: Iterable[Mapping[str, Any]] | pa.Table, where: str = "rows") -> pa.Table:
    """Build a validated table in SCHEMA from row dicts (missing optional columns become null)."""
    if isinstance(rows, pa.Table):
        return validate_table(rows, where)
    rows = list(rows)
    columns = {c: [r.get(c) for r in rows] for c in COLUMNS}
    try:
        table = pa.table(columns, schema=SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise DataError(f"{where}: rows do not fit the dataset schema: {exc}") from None
    return validate_table(table, where)


def content_hash(table: pa.Table) -> str:
    """SHA-256 of a split's content (row order included), independent of parquet encoding."""
    h = hashlib.sha256()
    for row in table.to_pylist():
        h.update(json.dumps([row[c] for c in COLUMNS], ensure_ascii=False).encode())
        h.update(b"\n")
    return h.hexdigest()


def dataset_hash(hashes: Mapping[str, str]) -> str:
    """One hash over all splits' content hashes (the dataset's version)."""
    return hashlib.sha256(json.dumps(dict(sorted(hashes.items()))).encode()).hexdigest()


@dataclass
class DatasetInfo:
    """What ``dataset.json`` holds."""

    source: str
    splits: dict[str, dict[str, Any]]  # name -> {"rows", "entities", "hash"}
    seed: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    # forget split -> {"retain": retain split, "holdout": holdout split or None}
    pairs: dict[str, dict[str, str | None]] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @property
    def hash(self) -> str:
        """The dataset version: a hash over every split's content hash."""
        return dataset_hash({k: v["hash"] for k, v in self.splits.items()})

    def to_json(self) -> str:
        """Serialize as pretty JSON (the dataset.json file)."""
        return json.dumps(
            {
                "format_version": self.format_version,
                "source": self.source,
                "seed": self.seed,
                "params": self.params,
                "splits": self.splits,
                "pairs": self.pairs,
                "hash": self.hash,
            },
            indent=2,
            sort_keys=True,
        )


def check_disjoint(forget: pa.Table, retain: pa.Table, forget_name: str, retain_name: str) -> None:
    """Raise DataError if a forget split and a retain split share an entity."""
    shared = set(forget.column("entity").to_pylist()) & set(retain.column("entity").to_pylist())
    if shared:
        example = sorted(shared)[0]
        raise DataError(
            f"entity {example!r} (and {len(shared) - 1} more) appears in both forget split "
            f"{forget_name!r} and retain split {retain_name!r}; forget and retain must not share entities"
        )


def write_dataset(
    path: str | os.PathLike,
    splits: Mapping[str, Iterable[Mapping[str, Any]] | pa.Table],
    *,
    source: str,
    seed: int | None = None,
    params: dict[str, Any] | None = None,
    pairs: dict[str, dict[str, str | None]] | None = None,
    storage_options: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> DatasetInfo:
    """Validate and write a dataset; nothing is visible at ``path`` until every file is written."""
    if not splits:
        raise DataError(f"{path}: no splits to write")
    tables = {name: to_table(rows, f"split {name!r}") for name, rows in splits.items()}
    pairs = dict(pairs or {})
    for forget, pair in pairs.items():
        for role in ("retain", "holdout"):
            other = pair.get(role)
            if other is not None and other not in tables:
                raise DataError(
                    f"pairs[{forget!r}].{role} names split {other!r}, which is not written"
                )
        if forget not in tables:
            raise DataError(f"pairs names forget split {forget!r}, which is not written")
        check_disjoint(tables[forget], tables[pair["retain"]], forget, pair["retain"])
    info = DatasetInfo(
        source=source,
        seed=seed,
        params=dict(params or {}),
        pairs=pairs,
        splits={
            name: {
                "rows": t.num_rows,
                "entities": len(set(t.column("entity").to_pylist())),
                "hash": content_hash(t),
            }
            for name, t in tables.items()
        },
    )
    with storage.publish_dir(
        path, storage_options, overwrite=overwrite, commit_last=(INFO_FILE,), kind=KIND
    ) as staging:
        for name, table in tables.items():
            pq.write_table(table, staging / f"{name}.parquet")
        (staging / INFO_FILE).write_text(info.to_json())
    return info


class Dataset:
    """A dataset directory opened for reading: ``Dataset(path).read("forget10")``."""

    def __init__(self, path: str | os.PathLike, storage_options: dict[str, Any] | None = None):
        self.path = str(path)
        self.storage_options = storage_options
        info_path = storage.join(self.path, INFO_FILE)
        if not storage.exists(info_path, storage_options):
            if not storage.exists(self.path, storage_options):
                raise DataError(f"dataset {self.path} does not exist")
            raise DataError(
                f"{info_path} is missing: {self.path} is not a dataset directory "
                "(create one with `unlearn data synth` or `unlearn data import`)"
            )
        try:
            raw = json.loads(storage.read_bytes(info_path, storage_options))
            self.info = DatasetInfo(
                source=raw["source"],
                seed=raw.get("seed"),
                params=raw.get("params", {}),
                splits=raw["splits"],
                pairs=raw.get("pairs", {}),
                format_version=raw.get("format_version", FORMAT_VERSION),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{info_path} is not a valid dataset.json: {exc!r}") from None
        self._check_info(raw, info_path)
        self._cache: dict[str, pa.Table] = {}
        self._hashes: dict[str, str] = {}

    def _check_info(self, raw: dict[str, Any], info_path: str) -> None:
        """The recorded numbers must agree with each other (a hand-edited dataset.json is caught)."""
        if self.info.format_version != FORMAT_VERSION:
            raise DataError(
                f"{info_path}: format_version {self.info.format_version!r} is not supported "
                f"(this version reads {FORMAT_VERSION})"
            )
        if not isinstance(self.info.splits, dict) or not self.info.splits:
            raise DataError(f"{info_path}: 'splits' must map split names to their description")
        for name, entry in self.info.splits.items():
            ok = (
                isinstance(entry, dict)
                and isinstance(entry.get("hash"), str)
                and all(
                    isinstance(entry.get(k), int) and not isinstance(entry.get(k), bool)
                    for k in ("rows", "entities")
                )
            )
            if not ok:
                raise DataError(
                    f"{info_path}: splits[{name!r}] must hold integer 'rows' and 'entities' "
                    "and a string 'hash'"
                )
        recorded = raw.get("hash")
        if recorded != self.info.hash:
            raise DataError(
                f"{info_path}: its top-level hash {str(recorded)[:16]} does not match its split "
                f"hashes ({self.info.hash[:16]}); the file was edited after the dataset was "
                "written: write the dataset again"
            )
        if not isinstance(self.info.pairs, dict):
            raise DataError(f"{info_path}: 'pairs' must map forget splits to their partners")
        for forget, pair in self.info.pairs.items():
            roles = pair if isinstance(pair, dict) else {}
            for name in [forget, roles.get("retain"), roles.get("holdout")]:
                if name is not None and name not in self.info.splits:
                    raise DataError(
                        f"{info_path}: pairs[{forget!r}] names split {name!r}, which the "
                        "dataset does not hold"
                    )

    @property
    def splits(self) -> list[str]:
        """Names of the splits this dataset holds."""
        return sorted(self.info.splits)

    @property
    def hash(self) -> str:
        """The dataset version: a hash over every split's content hash, recomputed from the files
        (each split is read and checked against dataset.json once)."""
        return dataset_hash({s: self.split_hash(s) for s in self.splits})

    def split_hash(self, split: str) -> str:
        """The content hash of one split, recomputed from its file (and equal to dataset.json's)."""
        self.read(split)
        return self._hashes[split]

    def _require(self, split: str) -> None:
        if split not in self.info.splits:
            raise DataError(
                f"dataset {self.path} has no split {split!r} (it has: {', '.join(self.splits)})"
            )

    def read(self, split: str, *, verify: bool = True) -> pa.Table:
        """Read and validate one split; with ``verify`` its content hash must match dataset.json."""
        self._require(split)
        if split in self._cache:
            return self._cache[split]
        file = storage.join(self.path, f"{split}.parquet")
        if not storage.exists(file, self.storage_options):
            raise DataError(f"{file} is missing (dataset.json lists split {split!r})")
        data = storage.read_bytes(file, self.storage_options)
        try:
            table = pq.read_table(io.BytesIO(data))
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{file} is not a readable parquet file: {exc}") from None
        table = validate_table(table, str(file))
        if not verify:
            return table
        actual = content_hash(table)
        recorded = self.info.splits[split]
        if actual != recorded["hash"]:
            raise DataError(
                f"{file}: content hash {actual[:12]} does not match dataset.json "
                f"({recorded['hash'][:12]}); the file was changed after the dataset was written"
            )
        entities = len(set(table.column("entity").to_pylist()))
        for key, value in (("rows", table.num_rows), ("entities", entities)):
            if recorded[key] != value:
                raise DataError(
                    f"{file} holds {value} {key} but dataset.json records {recorded[key]}; "
                    "dataset.json was edited after the dataset was written"
                )
        self._cache[split] = table
        self._hashes[split] = actual
        return table

    def records(self, split: str) -> list[dict[str, Any]]:
        """One split as a list of row dicts."""
        return self.read(split).to_pylist()

    def paired_split(self, forget: str, role: str = "retain") -> str | None:
        """The split dataset.json pairs with ``forget`` in ``role`` ("retain" or "holdout"), or None."""
        if role not in ("retain", "holdout"):
            raise ValueError(f"role {role!r} is not 'retain' or 'holdout'")
        return (self.info.pairs.get(forget) or {}).get(role)

    def pair(self, forget: str, retain: str | None = None) -> tuple[pa.Table, pa.Table]:
        """Read a forget split with its retain split (from dataset.json pairs if not given), checked disjoint."""
        if retain is None:
            retain = self.paired_split(forget, "retain")
            if retain is None:
                raise DataError(
                    f"dataset {self.path}: no retain split recorded for {forget!r}; name one"
                )
        f, r = self.read(forget), self.read(retain)
        check_disjoint(f, r, forget, retain)
        return f, r
