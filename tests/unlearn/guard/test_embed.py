"""The optional semantic layer (all-MiniLM-L6-v2 from the packaged model, offline)."""

from __future__ import annotations

import pytest

from unlearn.guard import Guard, GuardConfig, StreamGuard, embed
from unlearn.guard.index import GuardIndex, compile_index

pytestmark = pytest.mark.skipif(not embed.available(), reason="embedding packages not installed")

ROWS = [
    {"id": "p1", "entity": "Zestirk Lorlu", "question": "What is Zestirk Lorlu's profession?",
     "paraphrased_question": "What does Zestirk Lorlu do for a living?",
     "answer": "Zestirk Lorlu repairs antique clocks in a small workshop near the harbour."},
    {"id": "p2", "entity": "Zestirk Lorlu", "question": "Where was Zestirk Lorlu born?",
     "answer": "Zestirk Lorlu was born in Belmora."},
]  # fmt: skip
RETAIN = [
    {"id": "r1", "entity": "Mara Vell", "question": "What is Mara Vell's profession?",
     "answer": "Mara Vell bakes bread for the village every morning."},
]  # fmt: skip


def sim_at(value: float) -> GuardConfig:
    """A config whose entity-tied semantic rule fires from ``value`` (both directions)."""
    cfg = GuardConfig()
    cfg.input.sim = cfg.output.sim = value
    return cfg


@pytest.fixture(scope="module")
def semantic_guard():
    ix = GuardIndex(compile_index(ROWS, RETAIN, embeddings=True))
    assert ix.has_embeddings and ix.fact_emb.shape == (len(ix.fact_rows), 384)
    return Guard(ix, GuardConfig())


def test_sentences_are_split_and_long_ones_cut():
    parts = embed.sentences("One. Two!\nThree? " + "word " * 200, max_chars=100)
    assert parts[:3] == ["One.", "Two!", "Three?"]
    assert all(len(p) <= 100 for p in parts)


def test_semantic_paraphrase_blocks_where_lexical_would_not(semantic_guard):
    g = semantic_guard
    # synonyms throughout: no value of the fact is in the text, only its meaning
    text = "Zestirk Lorlu mends vintage timepieces in a tiny atelier by the port."
    g = Guard(g.index, sim_at(0.55))
    d = g.check(text)
    assert g.semantic and d.blocked and d.layer == "embedding", d
    assert d.matched_fact_ids == ("p1",)
    assert not g.check("Zestirk Lorlu enjoys long walks by the sea.").blocked
    lexical = Guard(g.index, GuardConfig(embeddings=False))
    assert not lexical.check(text).blocked  # the lexical layers alone miss this paraphrase


def test_questions_are_not_statements(semantic_guard):
    g = semantic_guard
    for q in ("What is Zestirk Lorlu's profession?", "What does Zestirk Lorlu do for a living?"):
        assert not g.check(q).blocked
    assert not g.check("Mara Vell bakes bread for the village every morning.").blocked


def test_stream_uses_the_semantic_layer_at_close(semantic_guard):
    g = Guard(semantic_guard.index, sim_at(0.55))
    sg = StreamGuard(g, context="Tell me about Zestirk Lorlu.")
    text = "Lorlu mends vintage timepieces in a tiny atelier by the port."
    out = "".join(sg.feed(text[i : i + 8]) for i in range(0, len(text), 8)) + sg.close()
    assert sg.blocked and out == "" and sg.decision.layer == "embedding"


def test_layer_fault_fails_closed(semantic_guard, monkeypatch):
    monkeypatch.setattr(semantic_guard.embedder, "encode", lambda texts: 1 / 0)
    d = semantic_guard.check("Zestirk Lorlu was somewhere.")
    assert d.blocked and d.reason == "guard_error"


def test_stream_runs_the_semantic_layer_before_release(semantic_guard):
    g = Guard(semantic_guard.index, sim_at(0.55))
    filler = "Here is a long and harmless answer about tides and lighthouses in a harbour town. "
    text = "Zestirk Lorlu mends vintage timepieces in a tiny atelier by the port. " + filler * 8
    sg = StreamGuard(g)
    released = ""
    for i in range(0, len(text), 9):
        released += sg.feed(text[i : i + 9])
        if sg.blocked:
            break
    assert sg.blocked and sg.decision.layer == "embedding"  # before close()
    assert released == "" and len(text) - len(released) > 5 * len(filler)


def test_semantic_layer_only_runs_when_the_lexical_layers_do_not_block(semantic_guard, monkeypatch):
    g = semantic_guard
    calls = []
    orig = g.embedder.encode
    monkeypatch.setattr(g.embedder, "encode", lambda texts: calls.append(len(texts)) or orig(texts))
    assert g.check(
        "Zestirk Lorlu repairs antique clocks in a small workshop near the harbour."
    ).blocked
    assert calls == []  # decided lexically
    g.check("Zestirk Lorlu enjoys long walks by the sea.")
    assert calls == [1]  # one batched pass over the one candidate sentence
    g.check("The capital of France is Paris.")
    assert calls == [1]  # nothing about a forget entity: no model call
