"""Import the TOFU release (JSON lines or JSON arrays) into the dataset format.

TOFU has no entity column: its fictitious-author files hold 20 consecutive rows per author
(``rows_per_entity``). Rows of forget/retain files are matched to ``full.json`` by (question,
answer) so that one fact keeps one id and one entity in every split. ``forgetXX.json`` is merged
with ``forgetXX_perturbed.json`` (paraphrases and perturbed answers); ``retain_perturbed.json``,
``real_authors_perturbed.json`` and ``world_facts_perturbed.json`` become the splits
``retain_perturbed``, ``real_authors`` and ``world_facts`` (one entity per row: each is about a
different subject).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from unlearn.errors import DataError

SPLIT_FILE = re.compile(r"^(full|forget\d+|retain\d+)\.json$")
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


def import_tofu(src: str | Path, rows_per_entity: int = 20) -> tuple[dict[str, list[dict]], dict]:
    """Read a TOFU release directory; returns (splits, pairs) ready for ``write_dataset``."""
    src = Path(src)
    if rows_per_entity < 1:
        raise DataError(f"--rows-per-entity must be positive (got {rows_per_entity})")
    if not src.is_dir():
        raise DataError(f"TOFU source {src} is not a directory")
    full_path = src / "full.json"
    if not full_path.is_file():
        raise DataError(
            f"{full_path} is missing: TOFU import needs full.json to assign ids and entities"
        )
    full = read_records(full_path)
    index: dict[tuple[str, str], int] = {}
    for i, rec in enumerate(full):
        index.setdefault((rec["question"], rec["answer"]), i)

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
    pairs: dict[str, dict[str, str | None]] = {}
    for name in splits:
        m = re.fullmatch(r"forget(\d+)", name)
        if m:
            retain = f"retain{100 - int(m.group(1)):02d}"
            if retain in splits:
                pairs[name] = {"retain": retain, "holdout": None}
    return splits, pairs
