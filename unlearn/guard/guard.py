"""The guard: ``Guard.check(text or messages, direction) -> Decision``, failing closed.

A check normalizes the whole conversation (system prompt and every turn, in overlapping chunks,
never truncated) into its views, runs the lexical scanner and, when installed, the semantic layer,
and blocks on two signals: a named forget entity plus enough of one of its facts (content words,
a long shared n-gram, or a similar statement), or, with no name, a very similar statement, several
facts of one forget entity, or a long n-gram shared with a forget fact, each only when no retain
entity or fact explains the text better. Naming a forget entity alone never blocks an input;
outputs are held to stricter thresholds. A per-session ledger blocks a session once one entity's
facts accumulate past a limit (mosaic attack). Any exception or timeout gives ``blocked=True``
with reason ``guard_error``. Every block is written to the audit log without the matched text.
"""

from __future__ import annotations

import hashlib
import json
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
    clean,
    decoded_segments,
    fold,
    has_leet,
    rot13,
    skeleton,
    spaced_runs,
    tokens,
)
from unlearn.guard.scanner import Evidence, Scanner

DIRECTIONS = ("input", "output")
RULES = ("cov", "lsn", "sim", "sim_alone", "multi", "lsn_free")
RULE_LAYER = {
    "cov": "lexical",
    "lsn": "lexical",
    "multi": "lexical",
    "lsn_free": "lexical",
    "sim": "embedding",
    "sim_alone": "embedding",
}
RULE_REASON = {
    "cov": "entity_content",
    "lsn": "entity_ngram",
    "sim": "entity_semantic",
    "sim_alone": "semantic_alone",
    "multi": "multi_fact",
    "lsn_free": "long_ngram",
}


class GuardTimeout(UnlearnError):
    """A check ran past ``timeout_ms``."""


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
        return "\n\n".join(parts)
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


def scan_views(scanner: Scanner, raw: str, depth: int) -> list[str]:
    """Feed every normalization view of ``raw`` to ``scanner``; return the decoded segments."""
    segments = decoded_segments(raw, depth) if depth else []
    for i, text in enumerate([raw, *segments]):
        tag = "base" if i == 0 else f"dec{i}"
        folded = fold(text)
        scanner.feed(tag, tokens(folded))
        if has_leet(folded):
            scanner.feed_leet(tokens(skeleton(folded)))
        for run in spaced_runs(folded):
            scanner.feed_spaced(run)
        r13 = tokens(fold(rot13(text)))  # rotate before folding: accents stay out of ROT13
        if scanner.names_in(r13):
            scanner.feed(f"{tag}-rot13", r13)
    return segments


# -- decision -------------------------------------------------------------------------------------
def features(
    ev: Evidence, index: GuardIndex, config: GuardConfig
) -> dict[str, tuple[float, list[tuple[int, float]]]]:
    """Rule -> (signal value, [(fact, its value)]), threshold-free (``calibrate`` sweeps these)."""
    out: dict[str, tuple[float, list[tuple[int, float]]]] = {}
    for rule, table in (("cov", ev.ent_cov), ("lsn", ev.ent_lsn), ("sim", ev.sim)):
        pairs = sorted(((f, float(v)) for f, v in table.items() if v > 0), key=lambda p: -p[1])
        out[rule] = (pairs[0][1] if pairs else 0.0, pairs)
    s_f, fact, s_r = ev.alone
    ok = fact >= 0 and s_f - s_r >= config.sim_margin
    out["sim_alone"] = (s_f if ok else 0.0, [(fact, s_f)] if ok else [])
    counts: dict[int, list[int]] = {}
    for f, c in ev.free_cov.items():
        if c >= config.multi_cov:
            counts.setdefault(int(index.fact_entity[f]), []).append(f)
    n_f, n_r, best_facts = 0, 0, []
    for e, facts in counts.items():
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
    ) -> Evidence:
        """Threshold-free signals for a text or conversation (all chunks, all views)."""
        return self.evidence_batch([content], entities=entities, deadline=deadline)[0]

    def evidence_batch(
        self,
        contents: Sequence[Any],
        *,
        entities: set[int] | frozenset[int] = frozenset(),
        deadline: float | None = None,
    ) -> list[Evidence]:
        """``evidence`` for many inputs, with one batched embedding pass over all of them."""
        pending: list[tuple[Evidence, Evidence, list[str]]] = []  # (total, chunk ev, sentences)
        totals = []
        for content in contents:
            text = conversation_text(content)
            total = Evidence()
            for piece in chunks(text, self.config.chunk_chars, self.config.chunk_overlap):
                _tick(deadline)
                scanner = Scanner(self.index, entities)
                segments = scan_views(scanner, piece, self.config.decode_depth)
                ev = scanner.evidence()
                sents = self._sentences([piece, *segments], ev) if self.semantic else []
                if sents:
                    pending.append((total, ev, sents))
                else:
                    total.merge(ev)
            totals.append(total)
        if pending:
            _tick(deadline)
            flat = [s for _, _, sents in pending for s in sents]
            S = self.embedder.encode(flat)
            start = 0
            for total, ev, sents in pending:
                self._semantic(S[start : start + len(sents)], ev)
                start += len(sents)
                total.merge(ev)
        return totals

    def _sentences(self, texts: list[str], ev: Evidence) -> list[str]:
        """Sentences to embed; none unless the lexical layers touched a forget entity or fact."""
        nf = self.index.n_forget_facts
        touched = (
            ev.forget_mentioned
            or any(f < nf for f in ev.free_cov)
            or any(f < nf for f in ev.free_lsn)
        )
        if not touched or nf == 0:
            return []
        return [s for t in texts for s in embed.sentences(clean(t))]

    def _semantic(self, S: np.ndarray, ev: Evidence) -> None:
        """Add sentence-similarity signals from sentence embeddings ``S`` (sentences x dim)."""
        ix = self.index
        nf = ix.n_forget_facts
        facts = sorted(f for e in ev.forget_mentioned for f in ix.entity_facts[e])
        if facts:
            sa = S @ ix.fact_emb[facts].T
            sq = np.maximum(S @ ix.q_emb[facts].T, S @ ix.q2_emb[facts].T)
            stmt = (sa - np.maximum(0.0, sq - sa)).max(axis=0)  # a question is not a statement
            ev.sim = {f: float(v) for f, v in zip(facts, stmt)}
        sf = S @ ix.fact_emb[:nf].T
        j = sf.argmax(axis=1)
        best_f = sf[np.arange(len(S)), j]
        sq = np.maximum((S * ix.q_emb[j]).sum(1), (S * ix.q2_emb[j]).sum(1))
        best_f = best_f - np.maximum(0.0, sq - best_f)
        if ix.fact_emb.shape[0] > nf:
            best_r = (S @ ix.fact_emb[nf:].T).max(axis=1)
        else:
            best_r = np.zeros(len(S), dtype=np.float32)
        i = int(np.argmax(best_f - best_r))
        ev.alone = (float(best_f[i]), int(j[i]), float(best_r[i]))

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
            if c >= cfg.ledger_cov:
                seen.setdefault(int(ix.fact_entity[f]), set()).add(ix.fact_rows[f])
        for f, c in ev.free_cov.items():
            if c >= cfg.multi_cov:
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
        """Check a text or a conversation; never raises, fails closed (reason ``guard_error``)."""
        try:
            deadline = time.perf_counter() + self.config.timeout_ms / 1000.0
            if direction not in DIRECTIONS:
                raise ValueError(f"direction must be 'input' or 'output', got {direction!r}")
            entities = self.ledger.entities(session) if session is not None else set()
            ev = self.evidence(content, entities=entities, deadline=deadline)
            decision = self.decide(ev, direction, session)
            _tick(deadline)
        except Exception:  # noqa: BLE001 - fail closed on anything
            decision = error_decision()
        if decision.blocked:
            self._audit(decision, direction, session)
        return decision

    def _audit(self, decision: Decision, direction: str, session: str | None) -> None:
        if self.audit is None:
            return
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
        except Exception:  # noqa: BLE001 - the block stands even if the log cannot be written
            pass


def _tick(deadline: float | None) -> None:
    if deadline is not None and time.perf_counter() > deadline:
        raise GuardTimeout("guard check exceeded its timeout")
