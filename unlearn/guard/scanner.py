"""The lexical layers: an incremental scanner over the sentences of a text, in every view.

A ``Scanner`` consumes the tokens of each normalization view sentence by sentence (in one go for
a check, chunk by chunk for a stream) and keeps per sentence what it needs: the entities named
there (a partial name several entities share stays *ambiguous* until a full name or the facts
resolve it), its content stems, its value keys (words, numbers, dates) and whether it is a
question. ``evidence()`` ties values to entities: a sentence's values belong to the entities it
names, else to those the text was last about (so "He was born in 1956." after a sentence naming
X is about X) and those named next, values before any name to the first one named; a value a
named retain entity also holds is explained by it. From that come threshold-free signals per fact: the most specific
value tied to its entity (``val``), their sum (``vsum``), payload coverage (``cov``), the longest
shared n-gram (``lsn``), and the entity-free ones (``multi``, ``lsn_free``). Every lookup is a hash
lookup: nothing scans the list of facts, and the cost depends on the facts touched, not on the
length of the text already consumed.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from unlearn.guard.index import (
    FORGET,
    MASK,
    NAME_CONNECTORS,
    NGRAM,
    TITLE_WORDS,
    GuardIndex,
    gram_hashes,
    is_value_word,
)
from unlearn.guard.normalize import (
    MONTHS,
    NUMBER_WORDS,
    STOPWORDS,
    blob_numbers,
    derived_numbers,
    skeleton,
    stem,
    value_keys,
)

HOT = 0.3  # free coverage from which a fact is kept as a candidate for the entity-free rules
QUESTION_WEIGHT = 0.4  # a value inside a question counts less than half: asking is not telling
FREE_STRONG = 0.5  # value weight from which an unnamed sentence is a semantic candidate
_LEET_WORDS = {skeleton(w): w for w in (*NUMBER_WORDS, *MONTHS)}


@dataclass
class Candidate:
    """A sentence for the semantic layer: its masked text and the forget entities it is about."""

    text: str
    entities: tuple[int, ...]
    question: bool
    open: bool = False  # the scanner's last sentence, still being streamed


@dataclass
class Evidence:
    """Threshold-free signals of one check (facts are index positions)."""

    forget_mentioned: set[int] = field(default_factory=set)
    retain_mentioned: set[int] = field(default_factory=set)
    ent_cov: dict[int, float] = field(default_factory=dict)  # facts of named forget entities
    ent_lsn: dict[int, int] = field(default_factory=dict)
    ent_val: dict[int, float] = field(default_factory=dict)  # most specific value tied to it
    ent_vsum: dict[int, float] = field(default_factory=dict)  # sum of its values tied to it
    free_cov: dict[int, float] = field(default_factory=dict)  # forget and retain facts, no entity
    free_lsn: dict[int, int] = field(default_factory=dict)
    free_val: dict[int, float] = field(default_factory=dict)
    # sentence positions of each free_val fact's values (``multi`` counts facts close together)
    free_pos: dict[int, set[int]] = field(default_factory=dict)
    sim: dict[int, float] = field(default_factory=dict)  # named forget entities' facts, statements
    alone: tuple[float, int, float] = (0.0, -1, 0.0)  # best forget sim, its fact, best retain sim
    candidates: list[Candidate] = field(default_factory=list)
    semantic_done: bool = False

    def merge(self, other: Evidence) -> None:
        """Fold another chunk's evidence into this one (max per fact, union of mentions)."""
        self.forget_mentioned |= other.forget_mentioned
        self.retain_mentioned |= other.retain_mentioned
        for mine, theirs in (
            (self.ent_cov, other.ent_cov),
            (self.ent_lsn, other.ent_lsn),
            (self.ent_val, other.ent_val),
            (self.ent_vsum, other.ent_vsum),
            (self.free_cov, other.free_cov),
            (self.free_lsn, other.free_lsn),
            (self.free_val, other.free_val),
            (self.sim, other.sim),
        ):
            for k, v in theirs.items():
                if v > mine.get(k, -1):
                    mine[k] = v
        # another chunk's sentences are never close to this one's (chunks overlap: facts close
        # together share a chunk)
        shift = (
            1 + max((max(p) for p in self.free_pos.values() if p), default=0) + 10 * MULTI_WINDOW
        )
        for f, pos in other.free_pos.items():
            self.free_pos.setdefault(f, set()).update(p + shift for p in pos)
        if other.alone[0] - other.alone[2] > self.alone[0] - self.alone[2]:
            self.alone = other.alone
        self.candidates.extend(other.candidates)
        self.semantic_done = self.semantic_done and other.semantic_done


def _masked(toks: list[str]) -> str:
    """A sentence's tokens with each run of masked name tokens written once."""
    out: list[str] = []
    for t in toks:
        if t is MASK and out and out[-1] is MASK:
            continue
        out.append(t)
    return " ".join(out)


class _View:
    """Per-view state: the trailing tokens (for names) and 3-gram positions."""

    __slots__ = ("tail", "tail_caps", "grams", "stems", "pos")

    def __init__(self) -> None:
        self.tail: list[str] = []  # last tokens of the open sentence, for names across feeds
        self.tail_caps: list[bool] = []
        self.grams: dict[int, list[int]] = defaultdict(list)  # 3-gram hash -> end positions
        self.stems: list[str] = []  # the n-gram stream (names removed), for payload checks
        self.pos = 0  # stems already hashed into n-grams


CATAPHORA = 1  # sentences before a name that are about it ("Born in 1956. That is X.")
CARRY = 1  # sentences after a name that are about it without a pronoun
PRONOUN_CARRY = 6  # ... with a pronoun (across up to PRONOUN_BREAKS paragraphs, or turns)
PRONOUN_BREAKS = 3
MULTI_WINDOW = 6  # facts of one entity count together (``multi``) within this many sentences
LONG_TEXT = 10  # sentences (with a word) or LONG_PARAGRAPHS paragraph breaks (not turns of a
LONG_PARAGRAPHS = 3  # conversation): past either the bounds above apply
PARA_GAP = 2  # ... where a paragraph break counts as this many more
_PRONOUNS = frozenset(
    "he she they his her hers him their theirs them himself herself themselves".split()
)


_DEMONSTRATIVES = frozenset({"this", "that", "said"})
_NOT_REFERENTS = frozenset(
    "year years month week weekend day days time season summer winter spring autumn fall morning "
    "evening night issue term way one is was".split()
)


def _has_pronoun(toks: list[str]) -> bool:
    """A personal pronoun, or a demonstrative before a noun ("this person", "that author")."""
    if not _PRONOUNS.isdisjoint(toks):
        return True
    if _DEMONSTRATIVES.isdisjoint(toks):
        return False
    return any(
        a in _DEMONSTRATIVES and b.isalpha() and b not in STOPWORDS and b not in _NOT_REFERENTS
        for a, b in zip(toks, toks[1:])
    )


def _descriptors(toks: list[str]) -> set[tuple[str, str]]:
    """Word pairs of a sentence that could name someone again ("featured guest"): two adjacent
    words, neither a name, a stopword or a number."""
    out = set()
    for a, b in zip(toks, toks[1:]):
        if (
            a != MASK
            and b != MASK
            and a not in STOPWORDS
            and b not in STOPWORDS
            and a.isalpha()
            and b.isalpha()
        ):
            out.add((a, b))
    return out


class _Sentence:
    """What one sentence holds, over all views."""

    __slots__ = (
        "question",
        "ments",
        "amb",
        "others",
        "stems",
        "lstems",
        "keys",
        "lkeys",
        "blobs",
        "toks",
        "para",
    )

    def __init__(self, question: bool = False, para: bool = False) -> None:
        self.question = question
        self.para = para  # the sentence opens a paragraph (a blank line before it)
        self.ments: set[int] = set()  # entities named unambiguously
        self.amb: list[tuple[int, ...]] = []  # owners of ambiguous partial names
        self.others: set[tuple[int, ...]] = set()  # partial names that named someone else here
        self.stems: set[str] = set()
        self.lstems: set[str] = set()
        self.keys: set[str] = set()
        self.lkeys: set[str] = set()
        self.blobs: list[str] = []
        self.toks: list[str] = []  # base tokens, names masked (for the semantic layer)


class Scanner:
    """Incremental lexical matcher over an index; feed sentences' views, then ``evidence()``."""

    def __init__(self, index: GuardIndex, entities: set[int] | frozenset[int] = frozenset()):
        self.ix = index
        self.seed: set[int] = set(entities)
        self.sentences: list[_Sentence] = []
        self.closed = True  # the last sentence is finished: the next token opens a new one
        self.para_next = False  # the next sentence opens a paragraph
        self.seen: set[str] = set()
        self.views: dict[str, _View] = {}
        self.free_acc: dict[int, float] = {}
        self.free_hot: set[int] = set()
        self.gram_facts: set[int] = set()
        self.all_grams: set[int] = set()  # every n-gram hash of every view

    # -- sentences --------------------------------------------------------------------------
    @property
    def active(self) -> set[int]:
        """Every entity named so far (seeded, unambiguous, or one of an ambiguous name's owners)."""
        out = set(self.seed)
        for s in self.sentences:
            out |= s.ments
            for owners in s.amb:
                out.update(owners)
        return out

    def _current(self) -> _Sentence:
        if self.closed or not self.sentences:
            self.sentences.append(_Sentence(para=self.para_next))
            self.para_next = False
            self.closed = False
            for view in self.views.values():
                view.tail, view.tail_caps = [], []
        return self.sentences[-1]

    def begin(self, question: bool = False) -> None:
        """Open a new sentence (closing the current one)."""
        self.closed = True
        self._current().question = question

    def mark_question(self) -> None:
        """The open sentence turned out to be a question."""
        self._current().question = True

    def close(self) -> None:
        """End the open sentence; the next tokens start a new one."""
        self.closed = True

    def paragraph(self) -> None:
        """End the open sentence; the next one opens a paragraph (attribution does not carry a
        name across paragraphs without a pronoun or a repeated descriptor)."""
        self.closed = True
        self.para_next = True

    # -- feeding --------------------------------------------------------------------------
    def _names(
        self,
        view: _View,
        toks: list[str],
        table: dict,
        sent: _Sentence,
        caps: list[bool] | None,
        mask: bool,
    ) -> None:
        ix = self.ix
        k_max = ix.max_alias_tokens
        seq = view.tail + toks
        seq_caps = (view.tail_caps + caps) if caps is not None else None
        start = len(view.tail)
        first = ix.alias_first if table is ix.aliases else None
        last = ix.alias_last if table is ix.aliases else ix.leet_alias_last
        base = len(sent.toks) - len(toks) if mask else 0  # position of toks[0] in sent.toks
        if last.isdisjoint(toks):
            keep = k_max - 1
            view.tail = seq[-keep:] if keep > 0 else []
            view.tail_caps = (seq_caps[-keep:] if keep > 0 else []) if seq_caps is not None else []
            return
        for i in range(start, len(seq)):
            if seq[i] not in last:  # no name ends here (most tokens)
                continue
            for k in range(1, k_max + 1):
                j = i - k + 1
                if j < 0:
                    break
                if k > 1 and first is not None and seq[j] not in first:
                    continue
                hit = table.get(tuple(seq[j : i + 1]) if k > 1 else (seq[i],))
                if not hit:
                    continue
                owners, kind = hit
                if kind != "full":
                    if owners in sent.others:
                        continue
                    if self._someone_else(seq, seq_caps, j):
                        sent.others.add(owners)
                        continue
                if kind == "ambiguous":
                    sent.amb.append(owners)
                else:
                    sent.ments.update(owners)
                if mask:
                    for p in range(base + j - start, base + i - start + 1):
                        if 0 <= p < len(sent.toks):
                            sent.toks[p] = MASK
        keep = k_max - 1
        view.tail = seq[-keep:] if keep > 0 else []
        view.tail_caps = (seq_caps[-keep:] if keep > 0 else []) if seq_caps is not None else []

    def _someone_else(self, seq: list[str], caps: list[bool] | None, j: int) -> bool:
        """A partial name right after an unknown capitalized word names another person
        ("Layla Al-Kuwaiti" is not "Basil Mahfouz Al-Kuwaiti")."""
        if caps is None:
            return False
        k = j - 1
        names = self.ix.alias_vocab
        while k >= 0 and (seq[k] in NAME_CONNECTORS or seq[k] in names):
            k -= 1
        if k < 0 or k >= len(caps) or not caps[k]:
            return False
        t = seq[k]
        return (
            t.isalpha()
            and len(t) > 1
            and t not in self.ix.vocab
            and t not in STOPWORDS
            and t not in TITLE_WORDS
        )

    def names_in(self, toks: list[str]) -> bool:
        """True when ``toks`` hold a complete indexed name (a cheap gate for extra views)."""
        ix = self.ix
        gate, table, k_max = ix.alias_gate, ix.aliases, ix.max_alias_tokens
        if gate.isdisjoint(toks):
            return False
        for i, t in enumerate(toks):
            if t in gate:
                for k in range(1, k_max + 1):
                    if tuple(toks[i : i + k]) in table:
                        return True
        return False

    def feed(
        self,
        name: str,
        toks: list[str],
        *,
        text: str = "",
        caps: list[bool] | Callable[[], list[bool]] | None = None,
        primary: bool = True,
        grams: bool = True,
    ) -> None:
        """Consume folded tokens of a base-like view into the open sentence.

        ``text``: the folded sentence text (numeric dates); ``caps``: per-token capitalization
        (tells another person's name apart); ``primary``: these are the sentence's own tokens
        (kept, names masked, for the semantic layer); ``grams``: count them in the n-gram stream.
        """
        if not toks:
            return
        sent = self._current()
        view = self.views.get(name)
        if view is None:
            view = self.views[name] = _View()
        ix = self.ix
        if primary:
            sent.toks.extend(toks)
        if callable(caps):
            caps = caps() if not ix.alias_last.isdisjoint(toks) else None
        if caps is not None and len(caps) != len(toks):
            caps = None
        self._names(view, toks, ix.aliases, sent, caps, primary)
        stems = [stem(t) for t in toks]
        sent.stems.update(stems)
        keys = {"w:" + s for t, s in zip(toks, stems) if is_value_word(t)}
        keys |= value_keys(toks, text)
        if text:
            keys |= derived_numbers(text)
        sent.keys |= keys
        self._free(stems, keys)
        if grams:
            vocab = ix.alias_vocab
            view.stems.extend(s for t, s in zip(toks, stems) if t not in vocab)

    def _flush_grams(self) -> None:
        """Hash the n-grams of every view's stems consumed since the last flush (one numpy pass
        per view, not per sentence) and collect the facts sharing a distinctive one."""
        ix = self.ix
        for view in self.views.values():
            base = view.pos
            if len(view.stems) <= base:
                continue
            lead = min(base, NGRAM - 1)  # n-grams ending in the new words start this far back
            hashes = gram_hashes(view.stems[base - lead :])
            view.pos = len(view.stems)
            if len(hashes) == 0:
                continue
            grams = view.grams
            hl = hashes.tolist()
            for end, h in enumerate(hl, start=base - lead + NGRAM - 1):
                grams[h].append(end)
            self.all_grams.update(hl)
            self.gram_facts.update(ix.gram_postings(hashes))

    def _free(self, stems: list[str], keys: set[str]) -> None:
        """Entity-free accumulators: payload coverage and value weight per fact (once per word)."""
        ix = self.ix
        seen, postings, acc, hot = self.seen, ix.payload_postings, self.free_acc, self.free_hot
        for s in stems:
            if s in seen:
                continue
            seen.add(s)
            facts = postings.get(s)
            if facts:
                for f in facts:
                    v = acc.get(f, 0.0) + ix.weights[f][ix.payload[f].index(s)]
                    acc[f] = v
                    if v >= HOT:
                        hot.add(f)

    def values_in(self, toks: list[str]) -> bool:
        """True when ``toks`` hold two specific values of forget facts (a cheap gate for views)."""
        strong = self.ix.strong_stems
        return len({stem(t) for t in set(toks)} & strong) >= 2

    def feed_leet(self, toks: list[str], name: str = "leet") -> None:
        """Consume tokens of a leetspeak view (names, content words, numbers)."""
        if not toks:
            return
        sent = self._current()
        view = self.views.get(name)
        if view is None:
            view = self.views[name] = _View()
        self._names(view, toks, self.ix.leet_aliases, sent, None, False)
        stems = [stem(t) for t in toks]
        sent.lstems.update(stems)
        sent.lkeys.update("w:" + s for t, s in zip(toks, stems) if len(t) > 1)
        numbers = value_keys([_LEET_WORDS.get(t, t) for t in toks])
        sent.lkeys |= numbers
        sent.keys |= numbers

    def feed_spaced(self, run: str) -> None:
        """Consume one collapsed run of spaced-apart characters (spaceless view): names and
        value words inside it are found by substring lookup, numbers by their digits."""
        sent = self._current()
        ix = self.ix
        plain, leet = ix.blob_words, ix.blob_leet_words
        sk = skeleton(run)
        n = len(run)
        for i in range(n):
            for length in ix.blob_lengths:
                if i + length > n:
                    break
                piece = run[i : i + length]
                if piece in plain:
                    sent.keys.add("w:" + piece)
                lp = sk[i : i + length] if len(sk) == n else ""
                if lp in leet:
                    sent.lkeys.add("w:" + lp)
        for d in re.findall(r"\d{2,9}", run):
            sent.keys.add(f"#{int(d)}")
        sent.keys |= blob_numbers(run)
        table = self.ix.spaceless
        for i in range(len(run) - 3):
            for alias, owners, kind in table.get(run[i : i + 4], ()):
                if run.startswith(alias, i):
                    if kind != "full" and owners in sent.others:
                        continue
                    if kind == "ambiguous":
                        sent.amb.append(owners)
                    else:
                        sent.ments.update(owners)
        sent.blobs.append(run)

    # -- reading ---------------------------------------------------------------------------
    def _lsn(self, f: int) -> int:
        """Longest n-gram (in tokens) shared with fact ``f`` whose span holds a payload word."""
        hashes = self.ix.fact_gram_list(f)
        if not hashes or self.all_grams.isdisjoint(hashes):
            return 0
        payload = set(self.ix.payload[f])
        best = 0
        for view in self.views.values():
            if not view.grams:
                continue
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

    def _resolve(self) -> list[set[int]]:
        """Per sentence, the entities it names. An ambiguous name goes to the owners whose facts
        the sentence holds most of (context); on a tie, to those named in full anywhere in the
        text or the session; else it stays all its owners (then a value counts for a forget owner
        only where no retain owner explains it)."""
        ix = self.ix
        named = set(self.seed)
        for s in self.sentences:
            named |= s.ments
        out = []
        for s in self.sentences:
            m = set(s.ments)
            for owners in s.amb:
                score = {
                    e: sum(w for k in s.keys for _f, w in ix.entity_values(e).get(k, ()))
                    + sum(w for k in s.lkeys for _f, w in ix.entity_leet_values(e).get(k, ()))
                    for e in owners
                }
                best = max(score.values())
                top = {e for e, v in score.items() if v >= best - 1e-9}
                if best > 0 and len(top) < len(owners):
                    m |= top
                    continue
                hit = named.intersection(top)
                m |= hit if hit else top
            out.append(m)
        return out

    def evidence(self) -> Evidence:
        """Signals from everything consumed so far."""
        ix = self.ix
        self._flush_grams()
        ev = Evidence()
        mentions = self._resolve()
        # attribution: sentence -> the entities its values belong to
        # a sentence naming nobody is about the entities named last before it and those named
        # next after it (pronouns point either way; a distractor in between must not capture it)
        # (a bounded distance: CATAPHORA sentences before a name, CARRY after it, PRONOUN_CARRY
        # for a sentence with a personal pronoun; past that only a sentence repeating a phrase
        # that stood next to the name, "X, our featured guest" ... "our featured guest was born",
        # is still about it, so a long document's unrelated paragraphs are nobody's)
        about: list[set[int]] = [set() for _ in self.sentences]
        sents = self.sentences
        # paragraph breaks before each sentence, counted from the start
        # and each sentence's place counting only sentences with a word ("2." numbering a list
        # is no distance)
        breaks = [0] * len(sents)
        place = [0] * len(sents)
        n_breaks = n_place = 0
        for i, s in enumerate(sents):
            n_breaks += s.para
            breaks[i] = n_breaks
            n_place += any(t.isalpha() for t in s.toks) or not s.toks
            place[i] = n_place
        # a short text (a question, a conversation of a few turns) is about one subject: the
        # bounds apply to long texts only, where unrelated paragraphs are nobody's
        unbounded = n_place <= LONG_TEXT and n_breaks < LONG_PARAGRAPHS
        following: set[int] = set()
        next_at = 0
        for i in range(len(mentions) - 1, -1, -1):
            if mentions[i]:
                following, next_at = mentions[i], i
            elif following and (unbounded or place[next_at] - place[i] <= CATAPHORA):
                crossed = breaks[next_at] - breaks[i]
                if (
                    unbounded
                    or not crossed
                    or (crossed == 1 and _has_pronoun(self.sentences[i].toks))
                ):
                    about[i] = following
        topic: set[int] = set(self.seed)
        topic_at = -1 if self.seed else -(10**9)
        seed_topic = bool(self.seed)
        phrases: dict[tuple[str, str], set[int]] = {}
        for i, m in enumerate(mentions):
            if m:
                topic, topic_at, seed_topic = m, i, False
                about[i] = m
                for bg in _descriptors(self.sentences[i].toks):
                    phrases.setdefault(bg, set()).update(m)
            elif topic:
                gap = place[i] - place[topic_at] if topic_at >= 0 else i - topic_at
                toks = sents[i].toks
                crossed = breaks[i] - breaks[topic_at] if topic_at >= 0 else 0
                if (
                    unbounded
                    or seed_topic
                    or (gap <= CARRY and not crossed)
                    or (gap <= PRONOUN_CARRY and crossed <= PRONOUN_BREAKS and _has_pronoun(toks))
                ):
                    about[i] = about[i] | topic
                elif phrases:
                    back = set().union(*(phrases.get(bg, ()) for bg in _descriptors(toks)))
                    if back:
                        about[i] = about[i] | back
        named = set(self.seed).union(*mentions) if mentions else set(self.seed)
        for e in named:
            (ev.forget_mentioned if ix.entity_roles[e] == FORGET else ev.retain_mentioned).add(e)

        # per forget entity: stems / blobs of its sentences, and its values
        stems: dict[int, set[str]] = defaultdict(set)
        lstems: dict[int, set[str]] = defaultdict(set)
        blobs: dict[int, list[str]] = defaultdict(list)
        hits: dict[int, dict[str, float]] = defaultdict(dict)  # fact -> value key -> weight
        last_named = -(10**9)
        last = len(self.sentences) - 1 if not self.closed else -1
        for i, (s, ents) in enumerate(zip(self.sentences, about)):
            if mentions[i]:
                last_named = i
            forget = [e for e in ents if ix.entity_roles[e] == FORGET]
            if not forget:
                if s.toks and not s.question and self._free_candidate(s):
                    ev.candidates.append(Candidate(_masked(s.toks), (), s.question, i == last))
                continue
            retain = [e for e in ents if ix.entity_roles[e] != FORGET]
            q = QUESTION_WEIGHT if s.question else 1.0
            found = False  # does this sentence hold a value of the entity?
            for e in forget:
                stems[e] |= s.stems
                lstems[e] |= s.lstems
                blobs[e].extend(s.blobs)
                for keys, table_of in (
                    (s.keys, ix.entity_values),
                    (s.lkeys, ix.entity_leet_values),
                ):
                    if not keys:
                        continue
                    table = table_of(e)
                    for k in keys if len(keys) < len(table) else [k for k in table if k in keys]:
                        pairs = table.get(k)
                        if not pairs:
                            continue
                        if retain and self._explained(k, retain, table_of):
                            continue
                        found = True
                        for f, w in pairs:
                            h = hits[f]
                            if w * q > h.get(k, 0.0):
                                h[k] = w * q
                spans = ix.entity_spans.get(e)
                if spans:
                    words = {k[2:] for k in s.keys if k.startswith("w:")}
                    for f, span, w in spans:
                        if span <= words:
                            h = hits[f]
                            key = "s:" + "|".join(sorted(span))
                            if w * q > h.get(key, 0.0):
                                h[key] = w * q
            # the semantic layer sees statements about a forget entity: those naming it, those
            # right after a sentence naming it, and those holding some of its values
            near = i - last_named <= 2
            if s.toks and not s.question and (near or found):
                ev.candidates.append(
                    Candidate(_masked(s.toks), tuple(forget), s.question, i == last)
                )
        for e in ev.forget_mentioned:
            for f in ix.entity_facts[e]:
                h = hits.get(f)
                ev.ent_val[f] = max(h.values()) if h else 0.0
                ev.ent_vsum[f] = sum(h.values()) if h else 0.0
                cov = ev.ent_cov[f] = self._coverage(f, stems[e], lstems[e], blobs[e])
                # a counted n-gram must hold a content word: none seen, none to count
                ev.ent_lsn[f] = self._lsn(f) if cov > 0 else 0
        for f in self.free_hot:  # exact coverage (the postings skip words too common to index)
            ev.free_cov[f] = self._coverage(f, self.seen, set(), [])
        # ``multi`` counts facts anywhere in a short text: positions only for long ones
        ev.free_val, ev.free_pos = self._free_values(positions=not unbounded)
        seen = self.seen
        for f in self.gram_facts:
            if not any(s in seen for s in ix.payload[f]):
                continue
            n = self._lsn(f)
            if n:
                ev.free_lsn[f] = n
        return ev

    def _free_values(self, positions: bool = False) -> tuple[dict[int, float], dict[int, set[int]]]:
        """Per fact, the summed weight of its values present anywhere (no entity needed; a value
        only inside questions counts half), and (``positions``) the sentences holding them."""
        ix = self.ix
        best: dict[str, float] = {}
        for s in self.sentences:
            q = QUESTION_WEIGHT if s.question else 1.0
            for k in s.keys:
                if q > best.get(k, 0.0):
                    best[k] = q
            for k in s.lkeys:
                for plain in {p for _f, _w, p in ix.leet_value_postings.get(k, ())}:
                    if q > best.get(plain, 0.0):
                        best[plain] = q
        per: dict[int, dict[str, float]] = defaultdict(dict)
        for k, q in best.items():
            for f, w in ix.value_postings.get(k, ()):
                per[f][k] = w * q
        out = {}
        for f, hits in per.items():
            total = sum(hits.values())
            # the words of one multi-word name ("Port Harcourt") are one value, not several
            for span in ix.fact_spans.get(f, ()):
                got = [hits[k] for k in span if k in hits]
                if len(got) > 1:
                    total -= sum(got) - max(got)
            if total >= FREE_STRONG:
                out[f] = round(total, 4)
        if not positions or not out:
            return out, {}
        # a sentence's position: its index, plus PARA_GAP for every paragraph break before it
        needed = set().union(*(per[f] for f in out))
        where: dict[str, set[int]] = defaultdict(set)
        at = -PARA_GAP
        for s in self.sentences:
            at += 1 + PARA_GAP * s.para
            for k in needed.intersection(s.keys):
                where[k].add(at)
            for k in s.lkeys:
                for plain in {p for _f, _w, p in ix.leet_value_postings.get(k, ())}:
                    if plain in needed:
                        where[plain].add(at)
        pos = {f: set().union(*(where[k] for k in per[f])) for f in out}
        return out, pos

    def _explained(self, key: str, retain: list[int], table_of: Callable[[int], dict]) -> bool:
        return any(key in table_of(r) for r in retain)

    def _free_candidate(self, s: _Sentence) -> bool:
        """An unnamed sentence holding a specific value of some forget fact."""
        vpost, nf = self.ix.value_postings, self.ix.n_forget_facts
        strong = 0
        for k in s.keys:
            for f, w in vpost.get(k, ()):
                if f < nf and w >= FREE_STRONG:
                    strong += 1
                    break
            if strong >= 2:
                return True
        return False

    def _coverage(self, f: int, stems: set[str], lstems: set[str], blobs: list[str]) -> float:
        ix = self.ix
        pay, ws = ix.payload[f], ix.weights[f]
        if not lstems and not blobs:
            return sum(w for s, w in zip(pay, ws) if s in stems)
        total = 0.0
        for s, w in zip(pay, ws):
            if (
                s in stems
                or (lstems and skeleton(s) in lstems)
                or (len(s) >= 3 and any(s in b or skeleton(s) in b for b in blobs))
            ):
                total += w
        return total
