"""Import a MUSE release (Shi et al. 2024, "MUSE: Machine Unlearning Six-Way Evaluation for
Language Models", https://arxiv.org/abs/2407.06460) into the dataset format.

MUSE's layout (the muse_bench repository's ``data/<corpus>/`` and the Hugging Face subsets), each
file JSON (an array or JSON lines), Parquet, or plain text:

    raw/forget, raw/retain1, raw/retain2, raw/holdout     passages: the corpora
    knowmem/forget_qa, knowmem/retain_qa (or retain2_qa)  KnowMem questions and answers
    knowmem/forget_qa_icl, knowmem/retain_qa_icl          their in-context (few-shot) examples
    verbmem/forget                                        VerbMem {"prompt", "gt"} pairs
    privleak/forget, privleak/retain (or retain2), privleak/holdout   passages for the MIA

A passage file holds strings or objects with a ``text`` field (a ``.txt`` file is one document,
cut into passages at blank lines, about ``PASSAGE_CHARS`` characters each). Passages become
plain-text rows (an empty question: ``unlearn.models.prompting.encode_text``), VerbMem pairs rows
whose question is the prompt and answer the continuation; each passage or pair is its own entity,
so forget and retain never share one. The splits are named as MUSE_SPLITS says; ``forget`` pairs
with ``retain1`` (what open-unlearning trains with) and ``holdout``. Evaluate with
``unlearn eval --preset muse`` (``unlearn.eval.muse``).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from unlearn.errors import DataError

# our split -> (MUSE subset folder, file stems tried in order, kind)
MUSE_SPLITS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "forget": ("raw", ("forget",), "text"),
    "retain1": ("raw", ("retain1",), "text"),
    "retain2": ("raw", ("retain2",), "text"),
    "holdout": ("raw", ("holdout",), "text"),
    "knowmem_forget_qa": ("knowmem", ("forget_qa",), "qa"),
    "knowmem_retain_qa": ("knowmem", ("retain_qa", "retain2_qa"), "qa"),
    "knowmem_forget_qa_icl": ("knowmem", ("forget_qa_icl",), "qa"),
    "knowmem_retain_qa_icl": ("knowmem", ("retain_qa_icl", "retain2_qa_icl"), "qa"),
    "verbmem_forget": ("verbmem", ("forget",), "completion"),
    "privleak_forget": ("privleak", ("forget",), "text"),
    "privleak_retain": ("privleak", ("retain", "retain2"), "text"),
    "privleak_holdout": ("privleak", ("holdout",), "text"),
}
# the splits MUSE's evaluation reads (the corpora are for training)
EVAL_SPLITS = tuple(s for s in MUSE_SPLITS if s.split("_")[0] in ("knowmem", "verbmem", "privleak"))
EXTENSIONS = (".json", ".jsonl", ".parquet", ".txt")
PASSAGE_CHARS = 2000


def _read(path: Path) -> list[Any]:
    """The records of one file: JSON array / JSON lines, Parquet rows, or a .txt document."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return pq.read_table(io.BytesIO(path.read_bytes())).to_pylist()
        except Exception as exc:  # pyarrow raises several types for a broken file
            raise DataError(f"{path}: not a readable Parquet file: {exc}") from None
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    if path.suffix == ".txt":
        return _passages(text)
    try:
        if text.lstrip().startswith("["):
            records = json.loads(text)
        else:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON or JSON lines: {exc}") from None
    if not isinstance(records, list):
        raise DataError(f"{path}: expected a JSON array or JSON lines")
    return records


def _passages(text: str) -> list[str]:
    """A document cut at blank lines into passages of about PASSAGE_CHARS characters."""
    out, current = [], ""
    for para in (p.strip() for p in text.split("\n\n")):
        if not para:
            continue
        if current and len(current) + len(para) > PASSAGE_CHARS:
            out.append(current)
            current = ""
        current = f"{current}\n\n{para}" if current else para
    if current:
        out.append(current)
    return out


def _find(src: Path, folder: str, stems: tuple[str, ...]) -> Path | None:
    for stem in stems:
        for ext in EXTENSIONS:
            path = src / folder / f"{stem}{ext}"
            if path.is_file():
                return path
    return None


def _rows(name: str, kind: str, path: Path) -> list[dict[str, Any]]:
    rows = []
    for i, rec in enumerate(_read(path)):
        where = f"{path}:{i}"
        id_ = f"muse-{name}-{i:05d}"
        if kind == "text":
            text = rec.get("text") if isinstance(rec, dict) else rec
            if not isinstance(text, str) or not text.strip():
                raise DataError(f"{where}: a passage must be a non-empty string or {{'text': ...}}")
            rows.append({"id": id_, "entity": id_, "question": "", "answer": text})
            continue
        keys = ("question", "answer") if kind == "qa" else ("prompt", "gt")
        if not isinstance(rec, dict) or not all(isinstance(rec.get(k), str) for k in keys):
            raise DataError(
                f"{where}: expected an object with string fields {keys[0]!r}, {keys[1]!r}"
            )
        if not rec[keys[0]].strip() or not rec[keys[1]].strip():
            raise DataError(f"{where}: field {keys[0]!r} or {keys[1]!r} is empty")
        rows.append({"id": id_, "entity": id_, "question": rec[keys[0]], "answer": rec[keys[1]]})
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def import_muse(src: str | Path) -> tuple[dict[str, list[dict]], dict]:
    """Read a MUSE release directory; returns (splits, pairs) ready for ``write_dataset``.

    Every evaluation split (``EVAL_SPLITS``) must be present; of the corpora, ``forget`` is.
    """
    src = Path(src)
    if not src.is_dir():
        raise DataError(f"MUSE source {src} is not a directory")
    splits: dict[str, list[dict]] = {}
    for name, (folder, stems, kind) in MUSE_SPLITS.items():
        path = _find(src, folder, stems)
        if path is None:
            if name in EVAL_SPLITS or name == "forget":
                tried = ", ".join(f"{folder}/{s}{{{','.join(EXTENSIONS)}}}" for s in stems)
                raise DataError(
                    f"{src}: MUSE file for split {name!r} is missing (looked for {tried})"
                )
            continue
        splits[name] = _rows(name, kind, path)
    retain = "retain1" if "retain1" in splits else ("retain2" if "retain2" in splits else None)
    pairs: dict[str, dict[str, str | None]] = {}
    if retain is not None:
        holdout = "holdout" if "holdout" in splits else None
        pairs["forget"] = {"retain": retain, "holdout": holdout}
    return splits, pairs
