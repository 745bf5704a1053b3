"""StreamGuard: matches across chunk boundaries, holds back, releases nothing after a hit."""

from __future__ import annotations

import pytest

from unlearn.guard import StreamGuard
from unlearn.guard import stream as stream_mod
from unlearn.guard.scanner import Scanner


@pytest.fixture(scope="module")
def fact(forget_rows):
    return next(r for r in forget_rows if r["id"].endswith("birthplace"))


def _run(sg, text, size):
    out = [sg.feed(text[i : i + size]) for i in range(0, len(text), size)]
    out.append(sg.close())
    return "".join(out)


BENIGN = (
    "Here is a long and harmless answer about lighthouses, tides and the quiet life of a harbour "
    "town, which goes on for a while so that text has to be released before the stream ends. "
)


@pytest.mark.parametrize("size", [1, 3, 7, 50])
def test_fact_split_across_chunks_is_caught_and_nothing_after_is_released(guard, fact, size):
    value = fact["answer"].rstrip(".").split()[-1]  # the birthplace
    text = BENIGN + fact["answer"] + " And after the hit: SECRET-TAIL more words follow here."
    sg = StreamGuard(guard)
    released = _run(sg, text, size)
    assert sg.blocked and sg.decision.reason == "entity_content"
    assert fact["id"] in sg.decision.matched_fact_ids
    assert value not in released and "SECRET-TAIL" not in released
    assert fact["entity"] not in released  # the hold-back kept the whole fact sentence
    assert text.startswith(released)  # what was released is an untouched prefix
    assert len(released) > 0  # benign text before the fact did get out
    assert sg.feed("more") == "" and sg.close() == ""


def test_name_in_prompt_and_fact_in_output(guard, fact):
    answer = fact["answer"].replace(fact["entity"], "They")
    sg = StreamGuard(guard, context=[{"role": "user", "content": f"Who is {fact['entity']}?"}])
    released = _run(sg, BENIGN + answer, 5)
    assert sg.blocked and fact["answer"].rstrip(".").split()[-1] not in released
    plain = StreamGuard(guard)
    assert _run(plain, BENIGN + answer, 5) == BENIGN + answer


def test_benign_stream_is_released_whole_and_in_order(guard):
    sg = StreamGuard(guard)
    text = BENIGN * 3
    pieces = [sg.feed(text[i : i + 9]) for i in range(0, len(text), 9)]
    assert sum(len(p) for p in pieces) > 0  # released while streaming, not only at the end
    assert "".join(pieces) + sg.close() == text
    assert not sg.blocked and sg.decision.reason == "ok"


def test_holdback_covers_the_longest_name_and_fact(guard):
    ix = guard.index
    assert guard.holdback_chars >= max(ix.max_alias_chars, ix.max_fact_chars)
    sg = StreamGuard(guard)
    text = BENIGN * 2
    released = "".join(sg.feed(text[i : i + 4]) for i in range(0, len(text), 4))
    assert len(text) - len(released) >= guard.holdback_chars


def test_spaced_out_fact_across_chunks(guard, fact):
    spaced = "   ".join(" ".join(w) for w in fact["answer"].split())
    sg = StreamGuard(guard)
    released = _run(sg, BENIGN + spaced + " then normal words again", 4)
    assert sg.blocked
    assert BENIGN.startswith(released)  # none of the spaced-out fact got out


def test_encoded_fact_is_caught_at_close(guard, fact):
    import base64

    sg = StreamGuard(guard)
    out = _run(sg, "Decode: " + base64.b64encode(fact["answer"].encode()).decode(), 6)
    assert sg.blocked and out == ""


def test_matcher_state_is_carried_not_rescanned(guard, monkeypatch):
    fed = []
    orig = Scanner.feed

    def spy(self, name, toks, **kw):
        if name == "base":
            fed.append(len(toks))
        return orig(self, name, toks, **kw)

    monkeypatch.setattr(Scanner, "feed", spy)
    text = BENIGN * 4
    sg = StreamGuard(guard)
    _run(sg, text, 11)
    # every token is consumed exactly once: linear cost, no re-scan of earlier text
    assert sum(fed) == len(text.split())


def test_error_fails_closed(guard, monkeypatch):
    sg = StreamGuard(guard)
    assert sg.feed("Hello there, ") == ""
    monkeypatch.setattr(stream_mod, "fold", lambda t: 1 / 0)
    assert sg.feed("world and more words ") == ""
    assert sg.blocked and sg.decision.reason == "guard_error"
    assert sg.close() == ""
    assert StreamGuard(guard).feed(b"bytes") == ""


def test_cut_point_holds_partial_words_and_single_letters():
    assert stream_mod._cut_point("hello wor") == len("hello ")
    assert stream_mod._cut_point("hello B a s") == len("hello ")
    assert stream_mod._cut_point("hello world ") == len("hello world ")


def test_encoded_fact_is_caught_before_release_not_only_at_close(guard, fact):
    import base64

    blob = base64.b64encode(fact["answer"].encode()).decode()
    text = "Decode this: " + blob + " " + BENIGN * 6
    sg = StreamGuard(guard)
    released = ""
    for i in range(0, len(text), 7):
        released += sg.feed(text[i : i + 7])
        if sg.blocked:
            break
    assert sg.blocked, "the encoded fact must block while streaming"
    assert blob[:8] not in released  # nothing of the encoded run got out
    assert len(text) - len(released) > len(BENIGN)  # blocked long before the end


def test_a_growing_encoded_run_holds_the_release(guard):
    sg = StreamGuard(guard)
    out = sg.feed(BENIGN * 3)
    out += sg.feed("aGVsbG8gd29ybGQgYW5kIG1vcmUgdGV4dCBoZXJl" * 20)  # one long word, no space yet
    assert "aGVsbG8" not in out and not sg.blocked


def test_value_tied_to_the_entity_across_chunks(guard, forget_rows):
    row = next(r for r in forget_rows if r["id"].endswith("birth_year"))
    year = row["answer"].rstrip(".").split()[-1]
    text = BENIGN + f"{row['entity']} was born in the year {year}. " + "SECRET-TAIL " + BENIGN
    sg = StreamGuard(guard)
    released = _run(sg, text, 3)
    assert sg.blocked and row["id"] in sg.decision.matched_fact_ids
    assert year not in released and "SECRET-TAIL" not in released


def test_a_guard_whose_audit_returns_nothing_still_blocks(guard, fact, monkeypatch):
    # duck-typed guards (the serving layer's test doubles) have an ``_audit`` returning None
    monkeypatch.setattr(type(guard), "_audit", lambda self, *a, **k: None)
    sg = StreamGuard(guard)
    out = _run(sg, BENIGN + fact["answer"] + " tail words here.", 6)
    assert sg.blocked and sg.decision is not None and sg.decision.reason == "entity_content"
    assert fact["answer"] not in out


def test_separated_leet_fact_streamed_in_small_chunks_blocks_before_the_tail(guard, fact):
    leet = str.maketrans({"a": "@", "e": "3", "o": "0", "s": "$", "t": "+"})
    disguised = "   ".join("_".join(w.translate(leet)) for w in fact["answer"].split())
    text = BENIGN + disguised + " SECRET-TAIL " + BENIGN * 3
    sg = StreamGuard(guard)
    released = ""
    for i in range(0, len(text), 5):
        released += sg.feed(text[i : i + 5])
        if sg.blocked:
            break
    assert sg.blocked and fact["id"] in sg.decision.matched_fact_ids
    assert "SECRET-TAIL" not in released and disguised[-12:] not in released


def test_short_encoded_value_streamed_blocks_before_close(guard, forget_rows):
    import base64

    row = next(r for r in forget_rows if r["id"].endswith("pet"))
    value = row["answer"].split(" keeps a ")[1].split()[0]  # a short value: under 16 in base64
    text = (
        BENIGN
        + f"{row['entity']} keeps a [{base64.b64encode(value.encode()).decode()}] at home. "
        + "SECRET-TAIL "
        + BENIGN * 3
    )
    sg = StreamGuard(guard)
    released = ""
    for i in range(0, len(text), 4):
        released += sg.feed(text[i : i + 4])
        if sg.blocked:
            break
    assert sg.blocked, "the decoded value must block while streaming"
    assert "SECRET-TAIL" not in released


def test_view_cut_never_splits_a_run_of_single_characters():
    from unlearn.guard.normalize import view_cut

    text = "plain words then 7. h. 3   0. c"
    assert text[: view_cut(text)] == "plain words then "
    assert view_cut("line one\nB a s") == len("line one\n")
