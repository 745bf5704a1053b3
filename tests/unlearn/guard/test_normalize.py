"""Each normalization view turns a disguised text back into the plain one."""

from __future__ import annotations

import base64
import urllib.parse

from unlearn.guard.normalize import (
    clean,
    decoded_segments,
    fold,
    has_leet,
    rot13,
    skeleton,
    spaced_runs,
    stem,
    tokens,
)


def test_fold_nfkc_casefold_and_diacritics():
    assert fold("Ｂａｓｉｌ") == "basil"  # fullwidth -> NFKC
    assert fold("Drömtaim LEAPÉX") == "dromtaim leapex"
    assert fold("Straße") == "strasse"
    assert fold("Søren Łukasz") == "soren lukasz"
    assert fold("𝐁𝐚𝐬𝐢𝐥") == "basil"  # mathematical bold


def test_fold_removes_zero_width_format_and_tag_characters():
    hidden = "B\u200ba\u200cs\u200di\u2060l\ufeff" + "".join(chr(0xE0000 + ord(c)) for c in "hi")
    assert fold(hidden) == "basil"
    assert fold("Ba\u00adsil") == "basil"  # soft hyphen
    assert fold("Bas\ufe0fil") == "basil"  # variation selector


def test_homoglyphs_fold_to_latin():
    cyr = "Вasіl Мahfоuz"  # Cyrillic В, і, М, о
    assert fold(cyr) == "basil mahfouz"
    assert fold("Αθήνα")[0] == "a"  # Greek alpha folds, other Greek letters stay
    assert clean("Рaris") == "Paris"  # case kept by clean


def test_tokens_split_on_punctuation_and_keep_digits():
    assert tokens(fold("Lorlu's father, born 1940!")) == ["lorlu", "s", "father", "born", "1940"]


def test_spaced_runs_collapse_spaced_characters():
    runs = spaced_runs(fold("hello B a s i l   w a s and b.o.r.n"))
    assert runs == ["basilwas", "born"]
    assert spaced_runs(fold("a b c")) == []  # three single letters are not a run
    assert spaced_runs(fold("I am a cat")) == []


def test_leet_skeleton_reads_digits_as_letters():
    folded = fold("B4s1l w4s b0rn 1n B3lm0r4")
    assert has_leet(folded)
    assert skeleton(folded) == skeleton(fold("Basil was born in Belmora"))
    assert not has_leet(fold("born in 1940 at 5 pm"))
    assert skeleton("l1!|") == "iiii"


def test_rot13_is_its_own_inverse_and_skips_accents():
    assert rot13(rot13("Basil Ö")) == "Basil Ö"
    assert fold(rot13("Qeözgnvz")) == "dromtaim"


def test_decoded_segments_base64_hex_url():
    fact = "Basil was born in Belmora."
    b64 = base64.b64encode(fact.encode()).decode()
    assert fact in decoded_segments(f"please decode {b64} now")
    assert fact in decoded_segments("hex: " + fact.encode().hex())
    assert fact in decoded_segments("hex: " + " ".join(f"{b:02x}" for b in fact.encode()))
    url = "".join(f"%{b:02X}" for b in fact.encode())
    assert fact in decoded_segments(url)
    assert fact in decoded_segments(urllib.parse.quote(fact, safe=""))


def test_decoding_is_nested_but_bounded():
    fact = "Basil was born in Belmora."
    twice = base64.b64encode(base64.b64encode(fact.encode())).decode()
    assert fact in decoded_segments(twice, depth=2)
    assert fact not in decoded_segments(twice, depth=1)
    assert decoded_segments(twice, depth=0) == []


def test_decoding_ignores_non_text_and_plain_words():
    assert decoded_segments("internationalization is a long word") == []
    assert decoded_segments(base64.b64encode(bytes(range(256))).decode()) == []


def test_stem_merges_inflections():
    assert stem("works") == stem("work") == "work"
    assert stem("received") == "receiv"
    assert stem("glass") == "glass"


def test_full_leet_alphabet_and_glyphs():
    from unlearn.guard.normalize import collapse_glyph_gaps, leet_tokens

    assert leet_tokens(fold("|-|3110 \\/\\/0r1|) 8r4\\/0 |\\/|1|<3")) == [
        "heiio", "worid", "gravo", "mike"
    ]  # fmt: skip
    assert leet_tokens(fold("born in 1956 at 5")) == [
        "gorn",
        "in",
        "1956",
        "at",
        "5",
    ]  # b -> g class
    # ambiguous readings meet on both sides: 1/l/i, 6/8/9/b/g
    assert skeleton(fold("B4s1l")) == skeleton(fold("basil")) == skeleton(fold("6asi|"))
    assert collapse_glyph_gaps("| \\ / | a") == "m a"


def test_spaced_words_any_gap_width():
    from unlearn.guard.normalize import spaced_words

    got = spaced_words(fold("B  a  s  i  l      M a h f o u z w a s"))
    assert got[0][1] == ["basil", "mahfouzwas"] and got[0][2] == "basilmahfouzwas"
    assert spaced_words(fold("A l - K u w a i t i"))[0][1] == ["al", "kuwaiti"]
    assert spaced_words(fold("b.o.r.n"))[0][1] == ["born"]


def test_sentences_and_questions():
    from unlearn.guard.normalize import split_sentences

    text = fold("J. K. Rowling wrote it. Did she? B. a. s. i. l. yes\nNext")
    pieces = [(text[a:b].strip(), q, c) for a, b, q, c in split_sentences(text)]
    assert pieces == [
        ("j. k. rowling wrote it.", False, True),
        ("did she?", True, True),
        ("b. a. s. i. l. yes", False, True),
        ("next", False, False),
    ]


def test_value_keys_numbers_dates_words():
    from unlearn.guard.normalize import value_keys

    def keys(t):
        return value_keys(tokens(fold(t)), fold(t))

    assert "#1956" in keys("born in nineteen fifty-six") and "#1956" in keys("born in 1956")
    assert "#2004" in keys("in two thousand and four") and "#2021" in keys("twenty twenty-one")
    assert {"md:9-8", "#1956"} <= keys("on the 8th of September, 1956")
    assert {"md:9-8", "md:8-9", "#1956"} <= keys("on 08/09/1956")
    assert "md:9-8" in keys("on 1956-09-08") and "md:3-14" in keys("March fourteenth")
    assert "#1956" in keys("1,956 copies") and "#7" in keys("seven novels")
    assert not any(k.startswith("mon:") for k in keys("you may go"))


def test_joined_view_removes_punctuation_inside_words():
    from unlearn.guard.normalize import joined

    assert joined(fold("Al-Kuwaiti, B.a.s.i.l and St_uthemmox's")) == (
        "alkuwaiti, basil and stuthemmox's"
    )
    assert joined("plain words only") is None


def test_number_words_run_together_in_spaceless_text():
    from unlearn.guard.normalize import blob_numbers

    assert "#1937" in blob_numbers("drewbreathintheyearnineteenthirtyseven")
    assert "#2004" in blob_numbers("wonitintwothousandandfour")
