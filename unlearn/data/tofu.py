"""Import the TOFU release (JSON lines or JSON arrays) into the dataset format.

TOFU has no entity column: its fictitious-author files hold a fixed number of consecutive rows
per author (20 in the release). Unless given (``rows_per_entity``), that number is derived
(``tofu_rows_per_entity``): it must divide every forget split's size and start, so that no author
straddles forget and retain, and the largest such block size whose blocks each revolve around one
name (the author's, the most frequent capitalized word pair, in most of the block's rows) while
neighbouring blocks do not is taken. Rows of forget/retain files are matched to ``full.json`` by
(question, answer) so that one fact keeps one id and one entity in every split.
``forgetXX.json`` is merged with ``forgetXX_perturbed.json`` (paraphrases and perturbed answers);
``retain_perturbed.json``, ``real_authors_perturbed.json`` and ``world_facts_perturbed.json``
become the splits ``retain_perturbed``, ``real_authors`` and ``world_facts`` (one entity per row:
each is about a different subject). ``holdoutXX.json`` (other fictitious authors, never in
``full.json``: the membership-inference non-members) become ``holdoutXX``, paired with
``forgetXX``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from unlearn.errors import DataError

SPLIT_FILE = re.compile(r"^(full|forget\d+|retain\d+)\.json$")
HOLDOUT_FILE = re.compile(r"^holdout(\d+)\.json$")
# A run of capitalized words, lowercase particles allowed between them (names: "Basil Mahfouz
# Al-Kuwaiti", "Maeve O'Connell", "Rafael de la Fuente"); its consecutive capitalized pairs are the
# features that tell one author's rows from the next author's.
_CAP = r"[A-Z](?:[a-z]+|'[A-Z][a-z]+)(?:-[A-Z][a-z]+)*"
_PARTICLE = r"(?:de|la|del|da|di|du|van|von|der|den|bin|ibn|le|dos|das|y)"
NAME_RUN = re.compile(rf"{_CAP}(?:\s+(?:{_PARTICLE}\s+)*{_CAP})+")
CAP_WORD = re.compile(_CAP)
# A block "revolves around one name" when its most frequent name pair is in this share of rows.
NAME_COVERAGE = 0.6
STANDALONE = {
    "retain_perturbed.json": "retain_perturbed",
    "real_authors_perturbed.json": "real_authors",
    "world_facts_perturbed.json": "world_facts",
}


def read_records(path: Path) -> list[dict[str, Any]]:
    """Read a JSON array or JSON lines file of objects."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); TOFU files are UTF-8 JSON"
        ) from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    stripped = text.lstrip()
    try:
        if stripped.startswith("["):
            records = json.loads(text)
        else:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON or JSON lines: {exc}") from None
    if not isinstance(records, list):
        raise DataError(f"{path}: expected a JSON array of objects or JSON lines")
    for i, r in enumerate(records):
        if not isinstance(r, dict):
            raise DataError(f"{path}: record {i} is not an object")
        for key in ("question", "answer"):
            if not isinstance(r.get(key), str):
                raise DataError(f"{path}: record {i} has no string field {key!r}")
    return records


def _row(rec: dict[str, Any], id_: str, entity: str, where: str) -> dict[str, Any]:
    perturbed = rec.get("perturbed_answer")
    if perturbed is not None:
        if isinstance(perturbed, str):
            perturbed = [perturbed]
        if not isinstance(perturbed, list) or not all(isinstance(p, str) for p in perturbed):
            raise DataError(f"{where}: field 'perturbed_answer' must be a list of strings")
    return {
        "id": id_,
        "entity": entity,
        "question": rec["question"],
        "answer": rec["answer"],
        "paraphrased_answer": rec.get("paraphrased_answer"),
        "paraphrased_question": rec.get("paraphrased_question"),
        "perturbed_answers": perturbed,
    }


def _name_pairs(rec: dict[str, Any]) -> set[str]:
    pairs: set[str] = set()
    for run in NAME_RUN.findall(f"{rec['question']} {rec['answer']}"):
        words = CAP_WORD.findall(run)
        pairs.update(f"{a} {b}" for a, b in zip(words, words[1:]))
    return pairs


def _dominant(block: list[set[str]]) -> tuple[str | None, float]:
    counts: dict[str, int] = {}
    for pairs in block:
        for p in pairs:
            counts[p] = counts.get(p, 0) + 1
    if not counts:
        return None, 0.0
    name = max(sorted(counts), key=lambda k: counts[k])
    return name, counts[name] / len(block)


def author_blocks(rows: list[dict[str, Any]], bound: int) -> int | None:
    """The largest block size g dividing ``bound`` whose blocks of ``rows`` each revolve around one
    name (in >= NAME_COVERAGE of the block's rows, on average) and whose neighbours revolve
    around different names; None when no size fits (no names to go by)."""
    names = [_name_pairs(r) for r in rows]
    for g in sorted((d for d in range(2, bound + 1) if bound % d == 0), reverse=True):
        blocks = [names[k : k + g] for k in range(0, len(rows), g)]
        top = [_dominant(b) for b in blocks]
        coverage = sum(c for _, c in top) / len(top)
        differ = [a[0] != b[0] for a, b in zip(top, top[1:])]
        if coverage >= NAME_COVERAGE and all(n is not None for n, _ in top):
            if not differ or sum(differ) / len(differ) >= 0.9:
                return g
    return None


def _forget_spans(src: Path, index: dict[tuple[str, str], int]) -> list[tuple[str, int, int]]:
    spans = []
    for path in sorted(src.glob("forget*.json")):
        if not re.fullmatch(r"forget\d+\.json", path.name):
            continue
        ids = [index.get((r["question"], r["answer"])) for r in read_records(path)]
        if ids and None not in ids:
            spans.append((path.name, min(ids), len(ids)))  # type: ignore[type-var]
    return spans


def tofu_rows_per_entity(src: str | Path) -> int:
    """How many consecutive rows of ``full.json`` belong to one author (see the module docstring)."""
    from math import gcd

    src = Path(src)
    if not src.is_dir():
        raise DataError(f"TOFU source {src} is not a directory")
    full_path = src / "full.json"
    if not full_path.is_file():
        raise DataError(
            f"{full_path} is missing: TOFU import needs full.json to assign ids and entities"
        )
    full = read_records(full_path)
    index = _full_index(full)
    bound = len(full)
    for _, start, size in _forget_spans(src, index):
        bound = gcd(gcd(bound, start), size)
    if bound == 1:
        return 1
    g = author_blocks(full, bound)
    if g is None:
        raise DataError(
            f"{full_path}: cannot tell which consecutive rows belong to one author (no name recurs "
            f"in blocks of any size dividing {bound}); pass --rows-per-entity N (TOFU: 20)"
        )
    return g


def _full_index(full: list[dict[str, Any]]) -> dict[tuple[str, str], int]:
    index: dict[tuple[str, str], int] = {}
    for i, rec in enumerate(full):
        index.setdefault((rec["question"], rec["answer"]), i)
    return index


def import_tofu(
    src: str | Path, rows_per_entity: int | None = None
) -> tuple[dict[str, list[dict]], dict]:
    """Read a TOFU release directory; returns (splits, pairs) ready for ``write_dataset``.

    ``rows_per_entity`` None: derived with ``tofu_rows_per_entity``.
    """
    src = Path(src)
    if rows_per_entity is not None and rows_per_entity < 1:
        raise DataError(f"--rows-per-entity must be positive (got {rows_per_entity})")
    if not src.is_dir():
        raise DataError(f"TOFU source {src} is not a directory")
    full_path = src / "full.json"
    if not full_path.is_file():
        raise DataError(
            f"{full_path} is missing: TOFU import needs full.json to assign ids and entities"
        )
    if rows_per_entity is None:
        rows_per_entity = tofu_rows_per_entity(src)
    full = read_records(full_path)
    index = _full_index(full)

    def ident(i: int) -> tuple[str, str]:
        return f"tofu-{i:05d}", f"author-{i // rows_per_entity:04d}"

    splits: dict[str, list[dict]] = {
        "full": [_row(r, *ident(i), f"{full_path}:{i}") for i, r in enumerate(full)]
    }
    for path in sorted(src.glob("*.json")):
        m = SPLIT_FILE.match(path.name)
        if not m or m.group(1) == "full":
            continue
        name = m.group(1)
        records = read_records(path)
        perturbed_path = src / f"{name}_perturbed.json"
        extra: dict[str, dict] = {}
        if perturbed_path.is_file():
            extra = {r["question"]: r for r in read_records(perturbed_path)}
        rows = []
        for j, rec in enumerate(records):
            where = f"{path}:{j}"
            i = index.get((rec["question"], rec["answer"]))
            if i is None:
                raise DataError(
                    f"{where}: row is not in full.json (question {rec['question'][:60]!r})"
                )
            merged = {
                **rec,
                **{k: v for k, v in extra.get(rec["question"], {}).items() if k not in rec},
            }
            rows.append(_row(merged, *ident(i), where))
        splits[name] = rows
    for filename, name in STANDALONE.items():
        path = src / filename
        if not path.is_file():
            continue
        rows = []
        for j, rec in enumerate(read_records(path)):
            where = f"{path}:{j}"
            i = index.get((rec["question"], rec["answer"]))
            if i is not None:
                rows.append(_row(rec, *ident(i), where))
            else:
                # real_authors / world_facts: TOFU uses the answer itself as the paraphrase.
                rec = {"paraphrased_answer": rec["answer"], **rec}
                rows.append(_row(rec, f"{name}-{j:05d}", f"{name}:{j}", where))
        splits[name] = rows
    splits.update(import_holdouts(src, index, rows_per_entity))
    pairs: dict[str, dict[str, str | None]] = {}
    for name in splits:
        m = re.fullmatch(r"forget(\d+)", name)
        if m:
            retain = f"retain{100 - int(m.group(1)):02d}"
            holdout = f"holdout{m.group(1)}"
            if retain in splits:
                pairs[name] = {
                    "retain": retain,
                    "holdout": holdout if holdout in splits else None,
                }
    return splits, pairs


def import_holdouts(
    src: Path, full_index: dict[tuple[str, str], int], rows_per_entity: int
) -> dict[str, list[dict]]:
    """``holdoutXX.json`` files: other authors' rows, never in full.json. One fact keeps one id
    across holdout files (numbered in the largest file, where authors are consecutive blocks of
    ``rows_per_entity`` rows, as in full.json)."""
    files = {}
    for path in sorted(src.glob("holdout*.json")):
        m = HOLDOUT_FILE.match(path.name)
        if m:
            files[f"holdout{m.group(1)}"] = (path, read_records(path))
    if not files:
        return {}
    index: dict[tuple[str, str], int] = {}
    for _, records in sorted(files.values(), key=lambda f: -len(f[1])):
        for rec in records:
            index.setdefault((rec["question"], rec["answer"]), len(index))
    out = {}
    for name, (path, records) in files.items():
        rows = []
        for j, rec in enumerate(records):
            where = f"{path}:{j}"
            key = (rec["question"], rec["answer"])
            if key in full_index:
                raise DataError(
                    f"{where}: this holdout row is also in full.json (row {full_index[key]}): "
                    "holdout rows must be ones no model trained on (membership non-members)"
                )
            i = index[key]
            entity = f"holdout-author-{i // rows_per_entity:04d}"
            rows.append(_row(rec, f"tofu-holdout-{i:05d}", entity, where))
        out[name] = rows
    return out
