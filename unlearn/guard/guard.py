"""The guard: ``Guard.check(text or messages, direction) -> Decision``, failing closed.

A check normalizes the whole conversation (system prompt and every turn, in overlapping chunks,
never truncated) into its views, runs the lexical scanner and, when installed and the lexical
layers have not already blocked, the semantic layer on the sentences about a forget entity (one
batched embedding pass per request), and blocks on two signals: a named forget entity tied to
enough of one of its facts (a specific value, several values, content words, a long shared
n-gram, or a similar statement), or, with no name, a very similar statement, several facts of one
forget entity, or a long n-gram shared with a forget fact, each only when no retain entity or
fact explains the text better. Naming a forget entity alone never blocks an input;
outputs are held to stricter thresholds. A per-session ledger blocks a session once one entity's
facts accumulate past a limit (mosaic attack). Any exception or timeout gives ``blocked=True``
with reason ``guard_error``. Every block is written to the audit log without the matched text; a
record that cannot be written is never silent (``on_audit_error``: ``block`` turns the decision
into ``guard_error``, ``raise`` raises ``AuditError``, ``warn`` logs a warning).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from unlearn.errors import UnlearnError
from unlearn.guard import embed
from unlearn.guard.config import GuardConfig, Thresholds
from unlearn.guard.index import FORGET, GuardIndex, load_index
from unlearn.guard.normalize import (
    ambiguous_glyphs,
    capitalized,
    collapse_glyph_gaps,
    collapse_separated,
    decode_spliced,
    fold,
    fold_cased,
    has_leet,
    has_leet_glyphs,
    joined,
    leet_tokens,
    rot13,
    rot13_words,
    skeleton,
    spaced_words,
    split_sentences,
    tokens,
)
from unlearn.guard.scanner import MULTI_WINDOW, Candidate, Evidence, Scanner

log = logging.getLogger("unlearn.guard")
DIRECTIONS = ("input", "output")
RULES = ("cov", "lsn", "val", "vsum", "sim", "sim_alone", "multi", "lsn_free", "vfree")
LEXICAL_RULES = ("cov", "lsn", "val", "vsum", "multi", "lsn_free", "vfree")
RULE_LAYER = {
    "cov": "lexical",
    "lsn": "lexical",
    "val": "lexical",
    "vsum": "lexical",
    "multi": "lexical",
    "lsn_free": "lexical",
    "vfree": "lexical",
    "sim": "embedding",
    "sim_alone": "embedding",
}
RULE_REASON = {
    "cov": "entity_content",
    "lsn": "entity_ngram",
    "val": "entity_value",
    "vsum": "entity_values",
    "sim": "entity_semantic",
    "sim_alone": "semantic_alone",
    "multi": "multi_fact",
    "lsn_free": "long_ngram",
    "vfree": "fact_values",
}
AUDIT_POLICIES = ("block", "raise", "warn")


class GuardTimeout(UnlearnError):
    """A check ran past ``timeout_ms``."""


class AuditError(UnlearnError):
    """An audit record could not be written (``on_audit_error: raise``)."""


@dataclass(frozen=True)
class Decision:
    """The outcome of one check; ``score`` >= 0.5 means some rule reached its threshold."""

    blocked: bool
    score: float
    layer: str  # "none" | "lexical" | "embedding" | "mosaic" | "error"
    matched_fact_ids: tuple[str, ...]
    reason: str  # "ok" or the rule that blocked, or "guard_error"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the decision."""
        out = asdict(self)
        out["matched_fact_ids"] = list(self.matched_fact_ids)
        return out


def error_decision() -> Decision:
    """The fail-closed decision."""
    return Decision(True, 1.0, "error", (), "guard_error")


# -- conversation handling ----------------------------------------------------------------------
# messages of a conversation are joined by a blank line holding U+2029 (PARAGRAPH SEPARATOR):
# sentences, tokens and views see a blank line; attribution tells a turn from a paragraph
TURN = "\n\u2029\n"


def conversation_text(content: Any) -> str:
    """The whole conversation as one text: a string, a message list, or {"messages"|"text": ...}."""
    if isinstance(content, bytes):
        content = content.decode("utf-8")  # strict: non-UTF-8 bytes fail the check (closed)
    if isinstance(content, str):
        return content
    if isinstance(content, Mapping):
        if "messages" in content:
            return conversation_text(content["messages"])
        if "text" in content:
            return conversation_text(content["text"])
        raise TypeError("a mapping to check needs a 'messages' or 'text' key")
    if isinstance(content, Sequence):
        parts = []
        for i, msg in enumerate(content):
            if isinstance(msg, str):
                parts.append(msg)
                continue
            if not isinstance(msg, Mapping) or "content" not in msg:
                raise TypeError(f"message {i} must be a mapping with a 'content' key")
            body = msg["content"]
            if isinstance(body, list):  # content parts: [{"type": "text", "text": ...}]
                body = "\n".join(
                    p.get("text", "") if isinstance(p, Mapping) else str(p) for p in body
                )
            if body is None:
                continue
            if not isinstance(body, str):
                raise TypeError(f"message {i}: content must be text, got {type(body).__name__}")
            parts.append(body)
        return TURN.join(parts)
    raise TypeError(f"cannot check a {type(content).__name__}: pass text or a message list")


def chunks(text: str, size: int, overlap: int) -> list[str]:
    """Overlapping pieces of at most ``size`` characters covering all of ``text``, cut at spaces."""
    if len(text) <= size:
        return [text]
    out, start = [], 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            cut = text.rfind(" ", start + size // 2, end)
            end = cut if cut > start else end
        out.append(text[start:end])
        if end >= len(text):
            break
        nxt = end - overlap
        space = text.find(" ", nxt, end)
        start = space + 1 if space != -1 else nxt
    return out


def feed_text(scanner: Scanner, text: str, tag: str = "base") -> None:
    """Feed one text's sentences to ``scanner`` in every view: base (folded), joined (punctuation
    inside words removed), leetspeak (when the text looks like it), spaced-out runs (as words and
    collapsed). Continues the scanner's open sentence (streams feed text piece by piece)."""
    folded = fold(text)
    cased = fold_cased(text)
    use_caps = len(cased) == len(folded)
    # look-alikes of i / l / I read as one letter in the leetspeak view, whichever they imitate
    leet = has_leet(folded) or ambiguous_glyphs(text)
    runs = spaced_words(folded) if " " in folded or "." in folded or "-" in folded else []
    # spaced-out leetspeak ("1 5 k n o w |\\| f 0 r"): glyphs read first, then the runs found
    lruns = spaced_words(skeleton(collapse_glyph_gaps(folded))) if leet else []
    ri = li = 0
    prev = 0
    for a, b, question, closed in split_sentences(folded):
        if folded.count("\n", prev, a) >= 2 and "\u2029" not in folded[prev:a]:
            scanner.paragraph()  # a blank line before it (not a turn of a conversation)
        prev = b
        seg = folded[a:b]
        # capitalization is only looked at when a partial name is found (computed then)
        caps = (lambda a=a, b=b: capitalized(cased[a:b])) if use_caps else None
        toks = tokens(seg)
        scanner.feed(tag, toks, text=seg, caps=caps)
        j = joined(seg)
        if j is not None:
            # only the words the joining changed ("alkuwaiti", "1956"): the rest is fed already
            fresh = [t for t in tokens(j) if t not in set(toks)]
            if fresh:
                scanner.feed(tag + "-j", fresh, text=j, primary=False, grams=False)
        if leet:
            scanner.feed_leet(leet_tokens(seg), tag + "-leet")
            if has_leet_glyphs(seg):  # "|3" may be one letter (b) or two (le): read both ways
                scanner.feed_leet(leet_tokens(seg, glyphs=False), tag + "-leet1")
            if j is not None:
                scanner.feed_leet(leet_tokens(j), tag + "-leetj")
        while ri < len(runs) and runs[ri][0] < b:
            _, words, blob = runs[ri]
            ri += 1
            scanner.feed(tag + "-sp", words, primary=False)
            spaced_text = " ".join(words)
            if has_leet(spaced_text) or any(ch.isdigit() for ch in spaced_text):
                scanner.feed_leet(leet_tokens(spaced_text), tag + "-spleet")
            scanner.feed_spaced(blob)
        while li < len(lruns) and lruns[li][0] < b:
            _, words, blob = lruns[li]
            li += 1
            scanner.feed_leet(words, tag + "-spleet2")
            scanner.feed_spaced(blob)
        if question:
            scanner.mark_question()
        if closed:
            scanner.close()


def derived_views(raw: str, depth: int, index: GuardIndex) -> list[tuple[str, str]]:
    """(tag, text) of the texts derived from ``raw`` that are read as views of their own: encoded
    segments decoded in place (``dec``, up to ``depth`` levels), words written as separated
    characters collapsed (``-col``), words in ROT13 rotated back where that makes them indexed
    words (``-r13w``). Each keeps the sentence around what it changed, so a name in clear text and
    a hidden value meet in one sentence."""
    out: list[tuple[str, str]] = []
    spliced = decode_spliced(raw, depth) if depth else None
    sources = [("base", raw)]
    if spliced is not None:
        out.append(("dec", spliced))
        sources.append(("dec", spliced))
    for tag, text in sources:
        col = collapse_separated(text)
        if col is not None:
            out.append((f"{tag}-col", col))
        words = rot13_words(text, index.vocab)
        if words is not None:
            out.append((f"{tag}-r13w", words))
    return out


def feed_views(scanner: Scanner, text: str, tag: str) -> None:
    """Feed one text (as its own sentences) and, when it reveals indexed names or values, its
    whole-text ROT13."""
    scanner.close()
    feed_text(scanner, text, tag)
    rotated = rot13(text)
    r13 = tokens(fold(rotated))  # rotate before folding: accents stay out
    if scanner.names_in(r13) or scanner.values_in(r13):
        scanner.close()
        feed_text(scanner, rotated, f"{tag}-rot13")


def scan_views(scanner: Scanner, raw: str, depth: int) -> list[str]:
    """Feed every normalization view of ``raw`` to ``scanner``; return the derived texts."""
    views = derived_views(raw, depth, scanner.ix)
    feed_views(scanner, raw, "base")
    for tag, text in views:
        feed_views(scanner, text, tag)
    scanner.close()
    return [text for _tag, text in views]


# -- decision -------------------------------------------------------------------------------------


def _closest(facts: list[int], pos: dict[int, set[int]], index: GuardIndex) -> list[int]:
    """The largest group of ``facts`` whose values lie within ``MULTI_WINDOW`` sentences of one
    another (facts found by coverage alone have no position and join every group): in a long
    document, values of one person scattered over unrelated paragraphs are not a restatement."""
    placed = [f for f in facts if pos.get(f)]
    loose = [f for f in facts if not pos.get(f)]
    if len(placed) < 2:
        return facts
    best: list[int] = []
    best_rows = -1
    for anchor in sorted(set().union(*(pos[f] for f in placed))):
        group = [f for f in placed if any(anchor <= p < anchor + MULTI_WINDOW for p in pos[f])]
        rows = len({index.fact_rows[f] for f in group})
        if rows > best_rows:
            best, best_rows = group, rows
    return best + loose


def features(
    ev: Evidence, index: GuardIndex, config: GuardConfig
) -> dict[str, tuple[float, list[tuple[int, float]]]]:
    """Rule -> (signal value, [(fact, its value)]), threshold-free (``calibrate`` sweeps these)."""
    out: dict[str, tuple[float, list[tuple[int, float]]]] = {}
    for rule, table in (
        ("cov", ev.ent_cov),
        ("lsn", ev.ent_lsn),
        ("val", ev.ent_val),
        ("vsum", ev.ent_vsum),
        ("sim", ev.sim),
    ):
        pairs = sorted(((f, float(v)) for f, v in table.items() if v > 0), key=lambda p: -p[1])
        out[rule] = (pairs[0][1] if pairs else 0.0, pairs)
    s_f, fact, s_r = ev.alone
    ok = fact >= 0 and s_f - s_r >= config.sim_margin
    out["sim_alone"] = (s_f if ok else 0.0, [(fact, s_f)] if ok else [])
    counts: dict[int, list[int]] = {}
    present = {f for f, c in ev.free_cov.items() if c >= config.multi_cov}
    # a fact counts when enough of its values are there: an absolute weight, or most of them
    present |= {
        f
        for f, v in ev.free_val.items()
        if v >= config.multi_val or v >= config.multi_cov * index.value_total[f] - 1e-9
    }
    for f in present:
        counts.setdefault(int(index.fact_entity[f]), []).append(f)
    n_f, n_r, best_facts = 0, 0, []
    for e, facts in counts.items():
        facts = _closest(facts, ev.free_pos, index)
        n = len({index.fact_rows[f] for f in facts})
        if index.entity_roles[e] == FORGET:
            if n > n_f:
                n_f, best_facts = n, facts
        else:
            n_r = max(n_r, n)
    value = float(n_f) if n_f > n_r else 0.0
    out["multi"] = (value, [(f, value) for f in best_facts] if value else [])
    l_f, l_r, l_fact = 0, 0, -1
    for f, n in ev.free_lsn.items():
        if f < index.n_forget_facts:
            if n > l_f:
                l_f, l_fact = n, f
        else:
            l_r = max(l_r, n)
    value = float(l_f) if l_f > l_r else 0.0
    out["lsn_free"] = (value, [(l_fact, value)] if value else [])
    v_f, v_r, v_fact = 0.0, 0.0, -1
    for f, v in ev.free_val.items():
        if f < index.n_forget_facts:
            if v > v_f:
                v_f, v_fact = v, f
        else:
            v_r = max(v_r, v)
    value = round(v_f, 4) if v_f > v_r else 0.0
    out["vfree"] = (value, [(v_fact, value)] if value else [])
    return out


def decide(
    feats: dict[str, tuple[float, list[tuple[int, float]]]],
    thresholds: Thresholds,
    index: GuardIndex,
) -> Decision:
    """Block when any rule's signal reaches its threshold; the strongest rule names the layer."""
    ratios = {}
    for rule in RULES:
        value = feats.get(rule, (0.0, []))[0]
        ratios[rule] = value / getattr(thresholds, rule)
    score = round(min(1.0, 0.5 * max(ratios.values())), 4)
    fired = [r for r in RULES if ratios[r] >= 1.0]
    if not fired:
        return Decision(False, score, "none", (), "ok")
    top = max(fired, key=ratios.get)
    ids = {
        index.fact_rows[f]
        for rule in fired
        for f, v in feats[rule][1]
        if f >= 0 and v >= getattr(thresholds, rule)
    }
    return Decision(True, score, RULE_LAYER[top], tuple(sorted(ids)), RULE_REASON[top])


# -- session ledger -------------------------------------------------------------------------------
class SessionLedger:
    """Per session: forget entities named so far and the facts of each entity seen (mosaic)."""

    def __init__(self, max_sessions: int = 10000):
        self.max_sessions = max_sessions
        self._lock = threading.Lock()
        self._sessions: OrderedDict[str, tuple[set[int], dict[int, set[str]]]] = OrderedDict()

    def entities(self, session: str) -> set[int]:
        """Forget entities named earlier in the session."""
        with self._lock:
            state = self._sessions.get(session)
            return set(state[0]) if state else set()

    def record(
        self, session: str, named: set[int], facts: dict[int, set[str]]
    ) -> dict[int, set[str]]:
        """Add named entities and entity -> fact rows seen; return the session's fact table."""
        with self._lock:
            state = self._sessions.get(session)
            if state is None:
                state = self._sessions[session] = (set(), {})
                while len(self._sessions) > self.max_sessions:
                    self._sessions.popitem(last=False)
            self._sessions.move_to_end(session)
            state[0].update(named)
            for e, rows in facts.items():
                state[1].setdefault(e, set()).update(rows)
            return {e: set(r) for e, r in state[1].items()}

    def forget(self, session: str) -> None:
        """Drop a session."""
        with self._lock:
            self._sessions.pop(session, None)


# -- audit log ------------------------------------------------------------------------------------
class AuditLog:
    """JSON-lines record of every block: time, direction, layer, reason, fact ids, score, index
    version, a hash of the session id; never the checked or matched text."""

    def __init__(
        self, path: str | os.PathLike | None = None, sink: Callable[[str], None] | None = None
    ):
        self.path = str(path) if path is not None else None
        self.sink = sink
        self._lock = threading.Lock()

    def write(self, record: Mapping[str, Any]) -> None:
        """Append one record."""
        line = json.dumps(record, sort_keys=True)
        with self._lock:
            if self.path is not None:
                os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as fh:
                    fh.write(line + "\n")
            if self.sink is not None:
                self.sink(line)


# -- the guard ------------------------------------------------------------------------------------
class Guard:
    """A fact-level filter built from a guard index: ``Guard.load(INDEX_DIR).check(text)``."""

    def __init__(
        self,
        index: GuardIndex,
        config: GuardConfig | None = None,
        *,
        audit: AuditLog | str | os.PathLike | None = None,
    ):
        self.index = index
        self.config = config or GuardConfig()
        self.semantic = bool(self.config.embeddings and index.has_embeddings and embed.available())
        self.embedder = (
            embed.Embedder(threads=self.config.embedding_threads) if self.semantic else None
        )
        self.ledger = SessionLedger(self.config.max_sessions)
        self.audit = audit if isinstance(audit, AuditLog) or audit is None else AuditLog(audit)
        self.audit_failures = 0  # audit records that could not be written
        self.last_audit_error: str | None = None

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        config: GuardConfig | None = None,
        *,
        storage_options: dict[str, Any] | None = None,
        dataset: Any = None,
        audit: AuditLog | str | os.PathLike | None = None,
    ) -> Guard:
        """Load an index directory (checked against ``dataset`` when given) into a guard."""
        return cls(load_index(path, storage_options, dataset), config, audit=audit)

    @property
    def holdback_chars(self) -> int:
        """Characters a stream holds back: the longest name or fact plus the margin."""
        longest = max(self.index.max_alias_chars, min(self.index.max_fact_chars, 400))
        return longest + self.config.holdback_margin

    # -- the pieces -----------------------------------------------------------------------------
    def evidence(
        self,
        content: Any,
        *,
        entities: set[int] | frozenset[int] = frozenset(),
        deadline: float | None = None,
        semantic: bool = True,
    ) -> Evidence:
        """Threshold-free signals for a text or conversation (all chunks, all views)."""
        return self.evidence_batch(
            [content], entities=entities, deadline=deadline, semantic=semantic
        )[0]

    def evidence_batch(
        self,
        contents: Sequence[Any],
        *,
        entities: set[int] | frozenset[int] = frozenset(),
        deadline: float | None = None,
        semantic: bool = True,
    ) -> list[Evidence]:
        """``evidence`` for many inputs, with one batched embedding pass over all of them
        (``semantic=False``: lexical layers only; ``add_semantic`` can complete it later)."""
        totals = []
        for content in contents:
            text = conversation_text(content)
            pieces = chunks(text, self.config.chunk_chars, self.config.chunk_overlap)
            total = None
            for piece in pieces:
                _tick(deadline)
                scanner = Scanner(self.index, entities)
                scan_views(scanner, piece, self.config.decode_depth)
                ev = scanner.evidence()
                if total is None:
                    total = ev
                else:
                    total.merge(ev)
            total.semantic_done = False
            totals.append(total)
        if semantic:
            self.add_semantic(totals, deadline=deadline)
        return totals

    def add_semantic(
        self,
        evs: Sequence[Evidence],
        *,
        deadline: float | None = None,
        include_open: bool = True,
    ) -> None:
        """Complete lexical evidence with the semantic layer: every candidate sentence of every
        evidence embedded in one batch, scored against its entities' facts (and, unnamed, the
        nearest forget and retain facts). ``include_open=False`` skips a stream's unfinished
        sentence."""
        if not self.semantic or self.index.n_forget_facts == 0:
            return
        todo = [ev for ev in evs if not ev.semantic_done]
        flat: list[Candidate] = []
        owner: list[Evidence] = []
        for ev in todo:
            seen: set[tuple[str, tuple[int, ...]]] = set()
            for c in ev.candidates:
                key = (c.text, c.entities)
                if key in seen or c.question or (c.open and not include_open):
                    continue
                seen.add(key)
                flat.append(c)
                owner.append(ev)
        if flat:
            _tick(deadline)
            S = self.embedder.encode([c.text[: self.config.max_sentence_chars] for c in flat])
            self._semantic(S, flat, owner)
        for ev in todo:
            ev.semantic_done = True

    def _semantic(self, S: np.ndarray, cands: list[Candidate], owner: list[Evidence]) -> None:
        """Sentence-similarity signals: (sentence, fact) pairs for the facts of the entities each
        sentence is about (a question is not a statement: similarity to the fact's question is
        subtracted); unnamed sentences against the nearest forget and retain facts."""
        ix = self.index
        nf = ix.n_forget_facts
        named = [i for i, c in enumerate(cands) if c.entities]
        for i in named:
            facts = [f for e in cands[i].entities for f in ix.entity_facts[e]]
            if not facts:
                continue
            s = S[i]
            sa = ix.fact_emb[facts] @ s
            sq = np.maximum(ix.q_emb[facts] @ s, ix.q2_emb[facts] @ s)
            stmt = sa - np.maximum(0.0, sq - sa)
            table = owner[i].sim
            for f, v in zip(facts, stmt.tolist()):
                if v > table.get(f, -1.0):
                    table[f] = v
        free = [i for i, c in enumerate(cands) if not c.entities]
        if free:
            Q = S[free]
            sf, jf = ix.ann("forget").best(Q, 1)
            best_f = sf[:, 0]
            j = np.maximum(jf[:, 0], 0)
            sq = np.maximum((Q * ix.q_emb[j]).sum(1), (Q * ix.q2_emb[j]).sum(1))
            best_f = best_f - np.maximum(0.0, sq - best_f)
            if ix.fact_emb.shape[0] > nf:
                best_r = ix.ann("retain").best(Q, 1)[0][:, 0]
            else:
                best_r = np.zeros(len(Q), dtype=np.float32)
            for k, i in enumerate(free):
                ev = owner[i]
                cand = (float(best_f[k]), int(j[k]), float(best_r[k]))
                if cand[0] - cand[2] > ev.alone[0] - ev.alone[2]:
                    ev.alone = cand

    def decide(self, ev: Evidence, direction: str, session: str | None = None) -> Decision:
        """Apply thresholds (and the session ledger) to evidence."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be 'input' or 'output', got {direction!r}")
        cfg = self.config
        feats = features(ev, self.index, cfg)
        decision = decide(feats, cfg.thresholds(direction, self.semantic), self.index)
        if session is None:
            return decision
        ix = self.index
        seen: dict[int, set[str]] = {}
        for f, c in ev.ent_cov.items():
            if c >= cfg.ledger_cov or ev.ent_val.get(f, 0.0) >= cfg.ledger_val:
                seen.setdefault(int(ix.fact_entity[f]), set()).add(ix.fact_rows[f])
        for f, c in ev.free_cov.items():
            if c >= cfg.multi_cov:
                seen.setdefault(int(ix.fact_entity[f]), set()).add(ix.fact_rows[f])
        for f, v in ev.free_val.items():
            if v >= cfg.multi_val or v >= cfg.multi_cov * ix.value_total[f] - 1e-9:
                seen.setdefault(int(ix.fact_entity[f]), set()).add(ix.fact_rows[f])
        table = self.ledger.record(session, ev.forget_mentioned, seen)
        n_r = max((len(r) for e, r in table.items() if ix.entity_roles[e] != FORGET), default=0)
        worst = max(
            ((len(r), e) for e, r in table.items() if ix.entity_roles[e] == FORGET), default=(0, -1)
        )
        if not decision.blocked and worst[0] >= cfg.mosaic_limit and worst[0] > n_r:
            rows = tuple(sorted(table[worst[1]]))
            score = round(min(1.0, 0.5 * worst[0] / cfg.mosaic_limit), 4)
            return Decision(True, score, "mosaic", rows, "mosaic")
        return decision

    # -- the entry point --------------------------------------------------------------------------
    def check(
        self, content: Any, direction: str = "input", *, session: str | None = None
    ) -> Decision:
        """Check a text or a conversation; fails closed (reason ``guard_error``) and never raises,
        except ``AuditError`` under ``on_audit_error: raise``."""
        try:
            deadline = time.perf_counter() + self.config.timeout_ms / 1000.0
            if direction not in DIRECTIONS:
                raise ValueError(f"direction must be 'input' or 'output', got {direction!r}")
            entities = self.ledger.entities(session) if session is not None else set()
            ev = self.evidence(content, entities=entities, deadline=deadline, semantic=False)
            decision = None
            if self.semantic:
                # the lexical layers alone may already block: then the model need not run
                first = decide(
                    features(ev, self.index, self.config),
                    self.config.thresholds(direction, True),
                    self.index,
                )
                if not first.blocked:
                    self.add_semantic([ev], deadline=deadline)
                else:
                    decision = self.decide(ev, direction, session)
            if decision is None:
                decision = self.decide(ev, direction, session)
            _tick(deadline)
        except Exception:  # noqa: BLE001 - fail closed on anything
            decision = error_decision()
        if decision.blocked:
            decision = self._audit(decision, direction, session)
        return decision

    def _audit(self, decision: Decision, direction: str, session: str | None) -> Decision:
        """Write the audit record of a block; a failure is handled by ``on_audit_error``."""
        if self.audit is None:
            return decision
        record = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "direction": direction if direction in DIRECTIONS else "invalid",
            "layer": decision.layer,
            "reason": decision.reason,
            "fact_ids": list(decision.matched_fact_ids),
            "score": decision.score,
            "index_version": self.index.version,
            "session": hashlib.sha256(session.encode()).hexdigest()[:16] if session else None,
        }
        try:
            self.audit.write(record)
        except Exception as exc:  # noqa: BLE001 - reported below, never silent
            self.audit_failures += 1
            self.last_audit_error = f"{type(exc).__name__}: {exc}"
            where = self.audit.path or "the audit sink"
            policy = self.config.on_audit_error
            if policy == "raise":
                raise AuditError(
                    f"audit record could not be written to {where} ({self.last_audit_error})"
                ) from exc
            if policy == "warn":
                log.warning("guard audit record lost (%s): %s", where, self.last_audit_error)
                return decision
            return Decision(True, 1.0, "error", decision.matched_fact_ids, "guard_error")
        return decision


def _tick(deadline: float | None) -> None:
    if deadline is not None and time.perf_counter() > deadline:
        raise GuardTimeout("guard check exceeded its timeout")
