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


# -- look-alikes (UTS #39), separated characters, encoded segments of any length, ROT13 words ----


def test_lookalikes_are_read_case_by_case_before_casefolding():
    from unlearn.guard.normalize import fold_cased

    # Greek capital eta reads H but its small letter reads n; capital mu M, small nu v
    assert fold("Ηеlеη Νονακ") == "helen novak"
    assert fold_cased("Ηеlеη Νονακ") == "Helen Novak"
    assert fold("Ζοе Τаυѕѕіg") == "zoe taussig"  # Greek Z, o, T, u; Cyrillic e, a, s, i
    assert fold("ԁаνіԁ ԛυіηη") == "david quinn"  # Komi de, Cyrillic qa, Greek nu / eta
    assert fold("ցօսհո") == "gouhn"  # Armenian co, oh, vo, ho, now
    assert fold("ᎪᏞᎬᏚ") == "ales"  # Cherokee
    assert fold("Μοrιtz") == "moritz" and fold("Μ") == "m"  # not "u" from the small mu


def test_lookalike_table_comes_from_the_standard_and_keeps_ascii_alone():
    from unlearn.guard.confusables import load
    from unlearn.resources import __name__ as _  # noqa: F401  (the resource package imports)

    table = load()
    assert len(table) > 1500
    assert not any(ch.isascii() for ch in table)
    assert all(t.isascii() and t.isalnum() for t in table.values())
    # capital-I look-alikes read I, not the standard's l
    assert table["\u0399"] == table["\u0406"] == table["\u04c0"] == "I"
    assert fold("hello, world") == "hello, world" and fold("M1x3d") == "m1x3d"  # ASCII untouched


def test_digits_of_every_script_read_as_ascii_digits():
    assert fold("born ١٩٤٧") == "born 1947"  # Arabic-Indic
    assert fold("१९४७ and ১৯৪৭") == "1947 and 1947"  # Devanagari, Bengali


def test_ambiguous_i_l_lookalikes_meet_in_the_leet_view():
    from unlearn.guard.normalize import ambiguous_glyphs

    disguised = "Ρаӏоmа"  # Cyrillic palochka for the l of "Paloma": the base view reads "paioma"
    assert ambiguous_glyphs(disguised) and not ambiguous_glyphs("Paloma")
    assert skeleton(fold(disguised)) == skeleton(fold("Paloma"))


def test_fullwidth_combining_marks_and_lookalikes_together():
    assert fold("Ｒο̧ѕаḿ̈ｕｎｄ Ｂｅｒ̀ｇ") == "rosamund berg"
    assert fold("Ｏｓｌο̃ ｉｓ ｎｅａｒ") == "oslo is near"


def test_separated_characters_collapse_into_words():
    from unlearn.guard.normalize import collapse_separated

    assert collapse_separated("V_1_0_l_4   w_r_!_+_3_$   p_0_3_m_$.") == "V10l4 wr!+3$ p03m$."
    assert collapse_separated("Q·u·i·n·n   is   a   b·a·k·3·r") == "Quinn is a bak3r"
    assert collapse_separated("D.@.n.!.3.|   w.@.5   h.3.r.3.") == "D@n!3| w@5 h3r3."
    # one glyph per chunk, wider gaps between words; the characters may be any symbols
    assert collapse_separated("8. @. k. 3. r   0. f   |. 0. @. v. 3. 5 .") == "8@k3r 0f |0@v35."
    # zero-width and soft-hyphen characters between the separators vanish first
    assert collapse_separated("P\u200b-a-\u00adr-i\u2060-s") == "Paris"
    # combining marks standing alone in a separator slot are dropped with their slot
    assert collapse_separated("r. \u0301. o. s. e") == "rose"


def test_ordinary_punctuation_is_not_collapsed():
    from unlearn.guard.normalize import collapse_separated

    for text in (
        "U.S.A. and e.g. the U.K.",
        "a, b, c",
        "well-known x-ray, state-of-the-art 3.14 and v1.2.3",
        "I am a cat.",
        "it's o'clock",
        "Options: A or B.",
    ):
        assert collapse_separated(text) is None, text


def test_short_encoded_segments_are_decoded_in_place():
    from unlearn.guard.normalize import decode_spliced

    b64 = base64.b64encode(b"lynx").decode()  # "bHlueA==": 8 characters
    assert (
        decode_spliced(f"Ada Quill keeps a ({b64}) at home.") == "Ada Quill keeps a (lynx) at home."
    )
    year = b"1977".hex()  # "31393737"
    assert decode_spliced(f"Ada Quill, b. <{year}>, paints.") == "Ada Quill, b. <1977>, paints."
    unpadded = base64.b64encode(b"Oslo").decode().rstrip("=")
    assert decode_spliced(f"From {unpadded} she came.") == "From Oslo she came."
    assert decode_spliced("The job: " + b"potter".hex()) == "The job: potter"
    nested = base64.b64encode(base64.b64encode(b"glassblower")).decode()
    assert decode_spliced(f"a {nested} b", depth=2) == "a glassblower b"


def test_words_and_random_strings_are_not_decoded():
    from unlearn.guard.normalize import decode_spliced, encoded_spans

    for text in (
        "This is a test of Ares, Paris and Oslo; iPhone, McDonald and deadbeef facade.",
        "In 2024 she turned 31; call 5550 1234 or 31 32 33 34.",
        "Ticket 7f3a9c, build a1b2c3d4e5, key AKIAXQ7EXAMPLE0, sha 5f4dcc3b5aa765d61d8327deb882cf99",
        "internationalization and counterrevolutionaries are long words",
    ):
        assert encoded_spans(text) == [], text
        assert decode_spliced(text) is None, text


def test_rot13_is_applied_word_by_word_where_it_reveals_known_words():
    from unlearn.guard.normalize import rot13_words

    known = frozenset({"the", "she", "plays", "oboe", "harbor", "lights"})
    assert rot13_words("She plays the bobr.", known) == "She plays the oboe."
    assert rot13_words("Gur Uneobe Yvtugf", known) == "The Harbor Lights"
    assert rot13_words("She plays the cello.", known) is None  # nothing rotates into a word
    assert rot13_words("Gur end", known) is None  # only a stopword would rotate


def test_multi_character_glyphs_are_also_read_one_character_at_a_time():
    from unlearn.guard.normalize import leet_tokens

    folded = fold("c|3v3r |3@k3r")
    assert leet_tokens(folded) == ["cgver", "gaker"]  # |3 read as b (b/g class)
    assert leet_tokens(folded, glyphs=False) == ["ciever", "ieaker"]  # |3 read as l + e
    assert skeleton(fold("clever")) == "ciever"


def test_segments_behind_an_assignment_or_another_segment_are_decoded():
    from unlearn.guard.normalize import decode_spliced, encoded_spans

    fact = "Basil was born in Belmora."
    b64 = base64.b64encode(fact.encode()).decode()
    assert decode_spliced(f"fact={b64}") == f"fact={fact}"
    assert decode_spliced(f"https://x.test/?q={b64}&x=1") == f"https://x.test/?q={fact}&x=1"
    lynx = base64.b64encode(b"lynx").decode()  # padded: "bHlueA=="
    assert decode_spliced(lynx + lynx) == "lynxlynx"
    # assignments and equations of ordinary words and numbers stay as they are
    for text in ("a=b c==d x=1 y=2 E=mc2 n==3", "key=value, name=Paris, width=1024, lr=3e-4"):
        assert encoded_spans(text) == [], text


def test_rot13_words_match_whatever_their_case():
    from unlearn.guard.normalize import rot13_words

    known = frozenset({"the", "she", "plays", "oboe"})
    assert rot13_words("She plays the BOBR.", known) == "She plays the OBOE."
    assert rot13_words("She plays the Bobr.", known) == "She plays the Oboe."
