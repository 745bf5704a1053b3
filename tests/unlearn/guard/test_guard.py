"""Guard decisions: every attack family blocks, benign text passes, errors fail closed."""

from __future__ import annotations

import base64
import json

import pytest

from unlearn.guard import AuditLog, Guard, GuardConfig
from unlearn.guard import guard as guard_mod
from unlearn.guard.attacks import ATTACK_FAMILIES, RENDER, homoglyphs, leet, spaced, zero_width
from unlearn.guard.scanner import Scanner


@pytest.fixture(scope="module")
def entity(forget_rows):
    name = forget_rows[0]["entity"]
    return name, [r for r in forget_rows if r["entity"] == name]


def _fact(entity, attr="birthplace"):
    return next(r for r in entity[1] if r["id"].endswith(attr))


def test_verbatim_fact_blocks_with_its_fact_id(guard, entity):
    row = _fact(entity)
    d = guard.check(f"Remember: {row['answer']}")
    assert d.blocked and d.layer == "lexical" and d.reason == "entity_content"
    assert d.matched_fact_ids == (row["id"],)
    assert d.score >= 0.5


@pytest.mark.parametrize("family", ATTACK_FAMILIES)
def test_every_attack_family_blocks(guard, entity, family):
    import random

    rng = random.Random(7)
    blocked = 0
    for _ in range(10):
        content, _ = RENDER[family](entity[1], rng)
        blocked += guard.check(content).blocked
    assert blocked == 10, family


@pytest.mark.parametrize(
    "disguise", [leet, homoglyphs, zero_width, spaced], ids=lambda f: f.__name__
)
def test_obfuscated_names_and_facts_block(guard, entity, disguise):
    import random

    row = _fact(entity, "occupation")
    d = guard.check(disguise(row["answer"], random.Random(1)))
    assert d.blocked and row["id"] in d.matched_fact_ids


def test_encoded_and_nested_encodings_block(guard, entity):
    row = _fact(entity, "work")
    once = base64.b64encode(row["answer"].encode()).decode()
    twice = base64.b64encode(once.encode()).decode()
    assert guard.check(f"decode: {once}").blocked
    assert guard.check(f"decode twice: {twice}").blocked
    assert guard.check("hex " + row["answer"].encode().hex()).blocked


def test_naming_an_entity_alone_does_not_block_input(guard, entity):
    name, rows = entity
    for r in rows:
        assert not guard.check(r["question"]).blocked, r["question"]
    assert not guard.check(f"Tell me everything you know about {name}.").blocked


def test_output_is_checked_more_strictly_than_input(guard, entity):
    # a partial fact: one content word of a two-word value
    row = _fact(entity, "genre")
    name = entity[0]
    value = row["answer"].rstrip(".").split()[-1]  # last word of the genre
    text = f"{name} might be connected to {value}, I am not sure."
    assert guard.config.lexical_output.cov < guard.config.lexical_input.cov  # the defaults
    guard.config.lexical_input.cov, guard.config.lexical_output.cov = 0.7, 0.4
    cfg = guard.config
    ev = guard.evidence(text)
    cov = ev.ent_cov[guard.index.fact_rows.index(row["id"])]
    assert cfg.lexical_output.cov <= cov < cfg.lexical_input.cov, cov
    assert not guard.check(text, "input").blocked
    assert guard.check(text, "output").blocked


def test_retain_entity_facts_and_general_text_pass(guard, retain_rows):
    for r in retain_rows[:60]:
        assert not guard.check(f"FYI: {r['answer']}").blocked, r["answer"]
    assert not guard.check("The capital of France is Paris. Explain photosynthesis.").blocked


def test_whole_conversation_is_scanned_including_system(guard, entity):
    row = _fact(entity, "award")
    messages = [
        {"role": "system", "content": f"Background knowledge: {row['answer']}"},
        {"role": "user", "content": "Hello!"},
        {"role": "assistant", "content": "Hi."},
        {"role": "user", "content": "What's new?"},
    ]
    assert guard.check(messages).blocked
    assert guard.check({"messages": messages}).blocked
    parts = [{"role": "user", "content": [{"type": "text", "text": row["answer"]}]}]
    assert guard.check(parts).blocked


def test_long_inputs_are_chunked_never_truncated(guard, entity):
    row = _fact(entity, "pet")
    filler = "The weather was mild and the market was busy that day. " * 400  # ~22k chars
    for text in (filler + row["answer"], row["answer"] + filler, filler + row["answer"] + filler):
        d = guard.check(text)
        assert d.blocked and row["id"] in d.matched_fact_ids
    assert guard_mod.chunks("x " * 5000, 4000, 1000)[-1].endswith("x ")


def test_chunks_cover_the_whole_text():
    text = " ".join(f"w{i}" for i in range(3000))
    pieces = guard_mod.chunks(text, 1000, 200)
    assert all(len(p) <= 1000 for p in pieces)
    words = set()
    for p in pieces:
        words.update(p.split())
    assert words == set(text.split())


def test_mosaic_ledger_blocks_accumulated_facts(index, entity):
    cfg = GuardConfig(embeddings=False, mosaic_limit=3)
    g = Guard(index, cfg)
    rows = entity[1]
    name = entity[0]
    # each turn gives one fact of an unnamed person: no single turn blocks
    turns = [r["answer"].replace(name, "this person") for r in rows[:4]]
    free = Guard(index, cfg)
    assert not any(free.check(t).blocked for t in turns)  # without a session nothing accumulates
    decisions = [g.check(t, session="s1") for t in turns]
    assert not decisions[0].blocked and not decisions[1].blocked
    assert (
        decisions[2].blocked and decisions[2].layer == "mosaic" and decisions[2].reason == "mosaic"
    )
    assert set(decisions[2].matched_fact_ids) == {r["id"] for r in rows[:3]}
    # other sessions are unaffected; the blocked session stays blocked
    assert not g.check(turns[0], session="s2").blocked
    assert g.check("Hello again.", session="s1").blocked


def test_session_remembers_named_entities(guard, entity):
    row = _fact(entity, "instrument")
    name = entity[0]
    pronoun_fact = row["answer"].replace(name, "They")
    assert not guard.check(pronoun_fact).blocked
    assert not guard.check(f"Let's talk about {name}.", session="t").blocked
    assert guard.check(pronoun_fact, session="t").blocked


def test_fault_in_a_layer_fails_closed(guard, entity, monkeypatch):
    def boom(self):
        raise RuntimeError("injected fault")

    monkeypatch.setattr(Scanner, "evidence", boom)
    d = guard.check("The capital of France is Paris.")
    assert d.blocked and d.reason == "guard_error" and d.layer == "error"


def test_fault_in_normalization_fails_closed(guard, monkeypatch):
    monkeypatch.setattr(guard_mod, "fold", lambda text: 1 / 0)
    assert guard.check("harmless").reason == "guard_error"


def test_timeout_fails_closed(index):
    g = Guard(index, GuardConfig(embeddings=False, timeout_ms=1e-6))
    d = g.check("The capital of France is Paris.")
    assert d.blocked and d.reason == "guard_error"


@pytest.mark.parametrize(
    "content",
    [b"\xff\xfe not utf-8", 42, [{"role": "user"}], {"nope": 1}, [{"content": 3}]],
    ids=["bytes", "int", "no-content", "bad-mapping", "non-text"],
)
def test_bad_input_fails_closed(guard, content):
    d = guard.check(content)
    assert d.blocked and d.reason == "guard_error"


def test_bad_direction_fails_closed(guard):
    assert guard.check("hello", direction="sideways").reason == "guard_error"


def test_audit_log_records_blocks_without_raw_text(index, entity, tmp_path):
    log = tmp_path / "audit" / "guard.jsonl"
    g = Guard(index, GuardConfig(embeddings=False), audit=log)
    row = _fact(entity, "birthplace")
    g.check(row["answer"], session="user-42")
    g.check("The capital of France is Paris.")  # not blocked: not logged
    g.check(b"\xff", direction="output")  # error: logged
    lines = log.read_text().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(x) for x in lines)
    assert set(first) == {
        "time", "direction", "layer", "reason", "fact_ids", "score", "index_version", "session",
    }  # fmt: skip
    assert first["fact_ids"] == [row["id"]] and first["index_version"] == index.version
    assert first["session"] != "user-42" and len(first["session"]) == 16
    assert second["reason"] == "guard_error" and second["direction"] == "output"
    raw = log.read_text().casefold()
    words = {w.strip(".,").casefold() for w in row["answer"].split()} | {"user-42"}
    leaked = [w for w in words if len(w) > 3 and w in raw]
    assert leaked == []


def test_audit_sink_receives_json(index, entity):
    got = []
    g = Guard(index, GuardConfig(embeddings=False), audit=AuditLog(sink=got.append))
    g.check(_fact(entity)["answer"])
    assert len(got) == 1 and json.loads(got[0])["reason"] == "entity_content"


def test_lexical_only_when_embedding_package_is_absent(index, monkeypatch):
    from unlearn.guard import embed

    monkeypatch.setattr(embed, "available", lambda: False)
    g = Guard(index, GuardConfig(embeddings=True))
    assert not g.semantic and g.embedder is None
    assert g.config.thresholds("input", g.semantic) is g.config.lexical_input


# -- the views added for held-out gaps: look-alikes, short encodings, separated characters -------

_GREEK_CYRILLIC = str.maketrans(
    {
        "A": "Α", "B": "Β", "E": "Ε", "H": "Η", "I": "Ι", "K": "Κ", "M": "Μ", "N": "Ν",
        "O": "Ο", "P": "Ρ", "T": "Τ", "X": "Χ", "Y": "Υ", "Z": "Ζ", "S": "Ѕ", "C": "С",
        "a": "а", "c": "с", "d": "ԁ", "e": "е", "g": "ց", "h": "һ", "i": "і", "j": "ј",
        "k": "κ", "l": "ӏ", "n": "η", "o": "ο", "p": "р", "q": "ԛ", "s": "ѕ", "u": "υ",
        "v": "ν", "w": "ԝ", "x": "х", "y": "у",
    }
)  # fmt: skip


def _value(row):
    """The answer's last word (the value of a one-value fact such as an occupation)."""
    return row["answer"].rstrip(".").split()[-1]


def test_complete_lookalike_alphabet_blocks(guard, forget_rows, retain_rows):
    attrs = ("occupation", "birthplace", "instrument", "father_job")
    rows = [r for r in forget_rows if r["id"].rsplit("-", 1)[-1] in attrs]
    for row in rows:
        d = guard.check(row["answer"].translate(_GREEK_CYRILLIC))
        assert d.blocked and row["id"] in d.matched_fact_ids, row["answer"]
    benign = [r for r in retain_rows if r["id"].rsplit("-", 1)[-1] in attrs][:40]
    assert not any(guard.check(r["answer"].translate(_GREEK_CYRILLIC)).blocked for r in benign)


def test_fullwidth_combining_marks_and_lookalikes_block(guard, forget_rows):
    row = next(r for r in forget_rows if r["id"].endswith("instrument"))
    fullwidth = {chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F)}
    mixed = "".join(
        (fullwidth.get(ch, ch) if i % 3 == 1 else ch.translate(_GREEK_CYRILLIC))
        + ("\u0301" if i % 4 == 1 and ch.isalpha() else "")
        for i, ch in enumerate(row["answer"])
    )
    d = guard.check(mixed)
    assert d.blocked and row["id"] in d.matched_fact_ids


@pytest.mark.parametrize("encoding", ["b64", "hex", "rot13"])
def test_short_encoded_value_inside_a_clear_sentence_blocks(guard, forget_rows, encoding):
    import codecs

    for attr in ("occupation", "pet", "birth_year"):
        row = next(r for r in forget_rows if r["id"].endswith(attr))
        value = _value(row) if attr != "pet" else row["answer"].split(" keeps a ")[1].split()[0]
        coded = {
            "b64": base64.b64encode(value.encode()).decode(),
            "hex": value.encode().hex(),
            "rot13": codecs.encode(value, "rot13"),
        }[encoding]
        if encoding == "rot13" and value.isdigit():
            continue  # ROT13 leaves digits as they are
        text = f"Between us, {row['entity']} and the matter of {attr}: it is {{{coded}}}, noted."
        d = guard.check(text)
        assert d.blocked and row["id"] in d.matched_fact_ids, (text, value)


def test_encoded_words_of_a_retain_entity_pass(guard, retain_rows):
    for row in [r for r in retain_rows if r["id"].endswith("occupation")][:20]:
        coded = base64.b64encode(_value(row).encode()).decode()
        assert not guard.check(f"{row['entity']} works as a [{coded}].").blocked


def _separated(text: str, sep: str, word_gap: str = "   ") -> str:
    leet = str.maketrans({"a": "@", "e": "3", "o": "0", "s": "$", "t": "+", "i": "!"})
    return word_gap.join(sep.join(w.translate(leet)) for w in text.split())


@pytest.mark.parametrize("sep", ["_", ".", "·", "-", ". ", "\u200b-\u00ad"])
def test_separated_characters_with_leet_and_zero_width_block(guard, forget_rows, sep):
    rows = [r for r in forget_rows if r["id"].endswith(("occupation", "birthplace", "work"))][:6]
    for row in rows:
        d = guard.check(_separated(row["answer"], sep))
        assert d.blocked and row["id"] in d.matched_fact_ids, _separated(row["answer"], sep)


def test_separated_retain_facts_pass(guard, retain_rows):
    rows = [r for r in retain_rows if r["id"].endswith(("occupation", "birthplace"))][:30]
    assert not any(guard.check(_separated(r["answer"], "_")).blocked for r in rows)
    assert not any(guard.check(_separated(r["answer"], ". ")).blocked for r in rows)
