"""The incremental scanner: names across feeds, shared n-grams, entity-free rules."""

from __future__ import annotations

from unlearn.guard.index import GuardIndex, compile_index
from unlearn.guard.normalize import fold, tokens
from unlearn.guard.scanner import Scanner

ROWS = [
    {"id": "a1", "entity": "Zestirk Lorlu", "question": "What is Zestirk Lorlu known for?",
     "answer": "Zestirk Lorlu is known for restoring the old clock tower of Belmora in the spring of 1921."},
    {"id": "a2", "entity": "Zestirk Lorlu", "question": "Where was Zestirk Lorlu born?",
     "answer": "Zestirk Lorlu was born in Quillon."},
    {"id": "a3", "entity": "Zestirk Lorlu", "question": "What pet does Zestirk Lorlu keep?",
     "answer": "Zestirk Lorlu keeps a tame raven."},
]  # fmt: skip
RETAIN = [
    {"id": "r1", "entity": "Mara Vell", "question": "Where was Mara Vell born?",
     "answer": "Mara Vell was born in Quillon."},
    # share each part of the forget name, so that only the full name identifies it
    {"id": "r2", "entity": "Zestirk Vell", "question": "Who is Zestirk Vell?",
     "answer": "Zestirk Vell is a baker."},
    {"id": "r3", "entity": "Kora Lorlu", "question": "Who is Kora Lorlu?",
     "answer": "Kora Lorlu is a sailor."},
]  # fmt: skip


def _ix():
    return GuardIndex(compile_index(ROWS, RETAIN, embeddings=False))


def _feed(sc, text, view="base"):
    sc.feed(view, tokens(fold(text)))


def test_multi_token_name_split_across_feeds_is_found():
    ix = _ix()
    sc = Scanner(ix)
    _feed(sc, "we talked about Zestirk")
    e = ix.entity_names.index("Zestirk Lorlu")
    ev = sc.evidence()
    # "Zestirk" alone is ambiguous (Zestirk Vell is a retain entity): both remain candidates
    assert ev.forget_mentioned == {e} and ev.retain_mentioned == {
        ix.entity_names.index("Zestirk Vell")
    }
    _feed(sc, "Lorlu yesterday")
    ev = sc.evidence()
    # the full name, completed in the next feed, resolves it
    assert ev.forget_mentioned == {e} and ev.retain_mentioned == set()


def test_longest_shared_ngram_needs_content_and_ignores_names():
    ix = _ix()
    sc = Scanner(ix)
    _feed(sc, "Zestirk Lorlu is known for restoring the old clock tower of Belmora, people say.")
    ev = sc.evidence()
    f = ix.fact_rows.index("a1")
    # "is known for restoring the old clock tower of belmora" = 10 tokens (name removed)
    assert ev.ent_lsn[f] == 10
    sc2 = Scanner(ix)
    _feed(sc2, "Zestirk Lorlu is known for something else entirely.")
    assert sc2.evidence().ent_lsn[f] == 0  # "is known for" holds no content word


def test_entity_free_long_ngram_and_explain_away():
    ix = _ix()
    sc = Scanner(ix)
    _feed(sc, "Someone restored the old clock tower of Belmora in the spring of 1921.")
    ev = sc.evidence()
    assert ev.free_lsn.get(ix.fact_rows.index("a1"), 0) >= 8
    # a fact shared word for word with a retain fact: the retain fact matches as long
    sc = Scanner(ix)
    _feed(sc, "She was born in Quillon.")
    ev = sc.evidence()
    forget = ev.free_lsn.get(ix.fact_rows.index("a2"), 0)
    retain = ev.free_lsn.get(ix.fact_rows.index("r1"), 0)
    assert forget == retain


def test_payload_seen_before_the_name_counts():
    ix = _ix()
    sc = Scanner(ix)
    _feed(sc, "A tame raven lives with")
    _feed(sc, "Zestirk Lorlu.")
    ev = sc.evidence()
    assert ev.ent_cov[ix.fact_rows.index("a3")] == 1.0


def test_context_entities_seed_the_scanner():
    ix = _ix()
    e = ix.entity_names.index("Zestirk Lorlu")
    sc = Scanner(ix, {e})
    _feed(sc, "They were born in Quillon.")
    assert sc.evidence().ent_cov[ix.fact_rows.index("a2")] == 1.0
