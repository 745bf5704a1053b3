"""The lexical layers: an incremental scanner over token streams of the normalization views.

A ``Scanner`` consumes tokens (in one go for a check, chunk by chunk for a stream) and keeps only
what later tokens need: the last few tokens of each view (to finish a multi-token name), the set of
content stems seen, each view's 3-gram positions, and coverage accumulated for facts reached through
distinctive words. ``evidence()`` turns that state into threshold-free signals; its cost depends on
the facts touched, not on the length of the text already consumed. Every lookup is a hash lookup:
nothing scans the list of facts.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from unlearn.guard.index import FORGET, NGRAM, GuardIndex, gram_hashes
from unlearn.guard.normalize import skeleton, stem

HOT = 0.3  # free coverage from which a fact is kept as a candidate for the entity-free rules


@dataclass
class Evidence:
    """Threshold-free signals of one check (facts are index positions)."""

    forget_mentioned: set[int] = field(default_factory=set)
    retain_mentioned: set[int] = field(default_factory=set)
    ent_cov: dict[int, float] = field(default_factory=dict)  # facts of named forget entities
    ent_lsn: dict[int, int] = field(default_factory=dict)
    free_cov: dict[int, float] = field(default_factory=dict)  # forget and retain facts, no entity
    free_lsn: dict[int, int] = field(default_factory=dict)
    sim: dict[int, float] = field(default_factory=dict)  # named forget entities' facts, statements
    alone: tuple[float, int, float] = (0.0, -1, 0.0)  # best forget sim, its fact, best retain sim

    def merge(self, other: Evidence) -> None:
        """Fold another chunk's evidence into this one (max per fact, union of mentions)."""
        self.forget_mentioned |= other.forget_mentioned
        self.retain_mentioned |= other.retain_mentioned
        for mine, theirs in (
            (self.ent_cov, other.ent_cov),
            (self.ent_lsn, other.ent_lsn),
            (self.free_cov, other.free_cov),
            (self.free_lsn, other.free_lsn),
            (self.sim, other.sim),
        ):
            for k, v in theirs.items():
                if v > mine.get(k, -1):
                    mine[k] = v
        if other.alone[0] - other.alone[2] > self.alone[0] - self.alone[2]:
            self.alone = other.alone


class _View:
    """Per-view state: the trailing tokens (for names) and 3-gram positions."""

    __slots__ = ("tail", "grams", "stems", "pos")

    def __init__(self) -> None:
        self.tail: list[str] = []  # last tokens, for multi-token names across feeds
        self.grams: dict[int, list[int]] = defaultdict(list)  # 3-gram hash -> end positions
        self.stems: list[str] = []  # the n-gram stream (names removed), for payload checks
        self.pos = 0


class Scanner:
    """Incremental lexical matcher over an index; feed views, then read ``evidence()``."""

    def __init__(self, index: GuardIndex, entities: set[int] | frozenset[int] = frozenset()):
        self.ix = index
        self.active: set[int] = set(entities)
        self.seen: set[str] = set()
        self.seen_leet: set[str] = set()
        self.spaced: list[str] = []
        self.views: dict[str, _View] = {}
        self.free_acc: dict[int, float] = {}
        self.free_hot: set[int] = set()
        self.gram_facts: set[int] = set()

    # -- feeding --------------------------------------------------------------------------
    def _names(self, view: _View, toks: list[str], table: dict) -> None:
        ix = self.ix
        k_max = ix.max_alias_tokens
        seq = view.tail + toks
        start = len(view.tail)
        first = ix.alias_first if table is ix.aliases else None
        for i in range(start, len(seq)):
            hit = table.get((seq[i],))
            if hit:
                self.active.update(hit)
            for k in range(2, k_max + 1):
                j = i - k + 1
                if j < 0:
                    break
                if first is not None and seq[j] not in first:
                    continue
                hit = table.get(tuple(seq[j : i + 1]))
                if hit:
                    self.active.update(hit)
        view.tail = seq[-(k_max - 1) :] if k_max > 1 else []

    def names_in(self, toks: list[str]) -> bool:
        """True when ``toks`` hold a complete indexed name (a cheap gate for extra views)."""
        ix = self.ix
        gate, table, k_max = ix.alias_gate, ix.aliases, ix.max_alias_tokens
        for i, t in enumerate(toks):
            if t in gate:
                for k in range(1, k_max + 1):
                    if tuple(toks[i : i + k]) in table:
                        return True
        return False

    def feed(self, name: str, toks: list[str]) -> None:
        """Consume folded tokens of a base-like view (base, rot13, decoded segments)."""
        if not toks:
            return
        view = self.views.get(name)
        if view is None:
            view = self.views[name] = _View()
        ix = self.ix
        self._names(view, toks, ix.aliases)
        stems = [stem(t) for t in toks]
        seen, postings, acc, hot = self.seen, ix.payload_postings, self.free_acc, self.free_hot
        new = {s for s in stems if s not in seen}
        seen |= new
        for s in new:
            facts = postings.get(s)
            if facts:
                for f in facts:
                    v = acc.get(f, 0.0) + ix.weights[f][ix.payload[f].index(s)]
                    acc[f] = v
                    if v >= HOT:
                        hot.add(f)
        vocab = ix.alias_vocab
        seq = [s for t, s in zip(toks, stems) if t not in vocab]
        if not seq:
            return
        base = len(view.stems)
        view.stems.extend(seq)
        lead = min(base, NGRAM - 1)  # n-grams ending in the new words start this far back
        hashes = gram_hashes(view.stems[base - lead :])
        if len(hashes) == 0:
            return
        grams = view.grams
        for end, h in enumerate(hashes.tolist(), start=base - lead + NGRAM - 1):
            grams[h].append(end)
        self.gram_facts.update(ix.gram_postings(hashes))

    def feed_leet(self, toks: list[str]) -> None:
        """Consume tokens of the leetspeak skeleton view (names and content words only)."""
        if not toks:
            return
        view = self.views.get("leet")
        if view is None:
            view = self.views["leet"] = _View()
        self._names(view, toks, self.ix.leet_aliases)
        self.seen_leet.update(stem(t) for t in toks)

    def feed_spaced(self, run: str) -> None:
        """Consume one collapsed run of spaced-apart characters (spaceless view)."""
        table = self.ix.spaceless
        for i in range(len(run) - 3):
            for alias, owners in table.get(run[i : i + 4], ()):
                if run.startswith(alias, i):
                    self.active.update(owners)
        self.spaced.append(run)

    # -- reading ---------------------------------------------------------------------------
    def _present(self, s: str) -> bool:
        if s in self.seen:
            return True
        if self.seen_leet and skeleton(s) in self.seen_leet:
            return True
        if len(s) >= 3:
            return any(s in run for run in self.spaced)
        return False

    def _coverage(self, f: int) -> float:
        ix = self.ix
        if not self.seen_leet and not self.spaced:
            seen = self.seen
            return sum(w for s, w in zip(ix.payload[f], ix.weights[f]) if s in seen)
        return sum(w for s, w in zip(ix.payload[f], ix.weights[f]) if self._present(s))

    def _lsn(self, f: int) -> int:
        """Longest n-gram (in tokens) shared with fact ``f`` whose span holds a payload word."""
        hashes = self.ix.fact_grams(f).tolist()
        if not hashes:
            return 0
        payload = set(self.ix.payload[f])
        best = 0
        for view in self.views.values():
            ends = sorted({p for h in hashes for p in view.grams.get(h, ())})
            if not ends:
                continue
            run_start = prev = ends[0]
            for p in ends[1:] + [None]:
                if p is not None and p == prev + 1:
                    prev = p
                    continue
                length = prev - run_start + NGRAM
                if length > best and any(
                    s in payload for s in view.stems[run_start - NGRAM + 1 : prev + 1]
                ):
                    best = length
                if p is not None:
                    run_start = prev = p
        return best

    def evidence(self) -> Evidence:
        """Signals from everything consumed so far."""
        ix = self.ix
        ev = Evidence()
        for e in self.active:
            if ix.entity_roles[e] == FORGET:
                ev.forget_mentioned.add(e)
                for f in ix.entity_facts[e]:
                    cov = ev.ent_cov[f] = self._coverage(f)
                    # a counted n-gram must hold a content word: none seen, none to count
                    ev.ent_lsn[f] = self._lsn(f) if cov > 0 else 0
            else:
                ev.retain_mentioned.add(e)
        for f in self.free_hot:  # exact coverage (the postings skip words too common to index)
            ev.free_cov[f] = self._coverage(f)
        seen = self.seen
        for f in self.gram_facts:
            if not any(s in seen for s in ix.payload[f]):
                continue
            n = self._lsn(f)
            if n:
                ev.free_lsn[f] = n
        return ev
