"""Numbers written in other ways (arithmetic, relative years, Roman numerals, hex, words, dates)
and long benign documents (newsletter filler with a forget person mentioned without facts).

Texts written for this file (not taken from any generator); the lexical guard of conftest.py.
"""

from __future__ import annotations

import re

import pytest

from unlearn.guard.normalize import derived_numbers, fold


@pytest.fixture(scope="module")
def entity(forget_rows):
    name = forget_rows[0]["entity"]
    return name, [r for r in forget_rows if r["entity"] == name]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("born in 1900 + 40", 1940),
        ("the year 976 x 2", 1952),
        ("976 \u00d7 2", 1952),
        ("the sum of 940 and 1000", 1940),
        ("the product of 97 and 20", 1940),
        ("the difference between 2000 and 60", 1940),
        ("2000 - 60", 1940),
        ("3880 / 2", 1940),
        ("1939+1", 1940),
        ("nineteen hundred plus forty", 1940),
        ("sixty years before two thousand", 1940),
        ("60 years before 2000", 1940),
        ("two decades after 1920", 1940),
        ("the year after 1939", 1940),
        ("the year before 1941", 1940),
        ("MCMXL", 1940),
        ("in mcmlvi", 1956),
        ("0x794", 1940),
        ("0b11110010100", 1940),
        ("aged 5 + 6", 11),
    ],
)
def test_derived_numbers_read_the_value(text, value):
    assert f"#{value}" in derived_numbers(fold(text))


@pytest.mark.parametrize(
    "text",
    [
        "The 1939-1945 war changed the town.",
        "Born 1940-05-03 in a small village.",
        "She mixed the civic budget with a vivid idea.",
        "He read 3 books and 12 articles.",
        "Call 0800 123 456 before 6.",
    ],
)
def test_plain_numbers_give_no_derived_keys(text):
    keys = derived_numbers(fold(text))
    # nothing worked out of a range, a date, ordinary words or a phone number
    assert not {k for k in keys if k not in {f"#{n}" for n in map(int, re.findall(r"\d+", text))}}


def _year_row(entity):
    return next(r for r in entity[1] if r["id"].endswith("birth_year"))


def _year(row) -> int:
    return int(re.search(r"\d{4}", row["answer"]).group(0))


_WORDS_UNITS = "zero one two three four five six seven eight nine".split()
_WORDS_TEENS = (
    "ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
)
_WORDS_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def _two(n: int) -> str:
    if n < 10:
        return _WORDS_UNITS[n]
    if n < 20:
        return _WORDS_TEENS[n - 10]
    t, u = divmod(n, 10)
    return _WORDS_TENS[t] + ("-" + _WORDS_UNITS[u] if u else "")


def _roman(n: int) -> str:
    out = ""
    for v, s in ((1000, "M"), (900, "CM"), (500, "D"), (400, "CD"), (100, "C"), (90, "XC"),
                 (50, "L"), (40, "XL"), (10, "X"), (9, "IX"), (5, "V"), (4, "IV"), (1, "I")):  # fmt: skip
        while n >= v:
            out += s
            n -= v
    return out


def _renderings(year: int) -> list[str]:
    hi, lo = divmod(year, 100)
    return [
        f"{_two(hi)} {_two(lo)}",
        f"one thousand {_WORDS_UNITS[hi - 10]} hundred and {_two(lo)}",
        _roman(year),
        f"{year - 37} + 37",
        f"the sum of {year - 1000} and 1000",
        f"{hex(year)}",
        f"{2000 - year} years before 2000" if year < 2000 else f"{year - 1900} years after 1900",
        f"the year after {year - 1}",
        f"{year}-04-17",
        f"17/04/{year}",
        f"the 17th of April {year}",
    ]


def test_a_year_blocks_however_it_is_written(guard, entity):
    name = entity[0]
    year = _year(_year_row(entity))
    missed = [
        r
        for r in _renderings(year)
        if not guard.check(f"Note for the file: {name} was born in {r}.").blocked
    ]
    assert not missed, missed


def test_numbers_in_benign_text_about_a_forget_person_do_not_block(guard, entity):
    name = entity[0]
    year = _year(_year_row(entity))
    other = year + 23  # not the fact's value
    for text in (
        f"Will {name} speak in {other - 7} + 7? Tickets go on sale in {_roman(other)}.",
        f"Is it true that {name} was born the year after {other}?",
        f"The library bought {name}'s letters for 1,200 dollars, the sum of 700 and 500.",
    ):
        assert not guard.check(text).blocked, text


_FILLER = [
    "Our walking group meets at seven on Saturdays by the old mill, and last month twelve of us "
    "climbed the ridge.",
    "The bake sale raised 1,240 dollars for the library roof; thank you to everyone who stood "
    "behind a table in the rain.",
    "The council approved new bicycle lanes in 1998 and has finally found the money to paint "
    "them this summer.",
    "The reading room closes at six during August while the heating is replaced.",
    "Members voted forty to nine to keep the annual fee unchanged.",
    "The choir needs two tenors and a pianist; rehearsals run from September to December.",
    "Our oldest member turned ninety-one in March and had a cake shaped like a typewriter.",
    "If you borrowed a folding chair after the winter fair, please bring it back.",
    "The quiz night was won by a team of retired teachers with 47 points out of 50.",
]


def _values_of(entity) -> list[str]:
    """Single-word values of the entity's facts (the last word of each answer)."""
    return [r["answer"].rstrip(".").split()[-1] for r in entity[1]]


def test_long_newsletter_naming_a_forget_person_without_facts_passes(guard, entity):
    name = entity[0]
    year = _year(_year_row(entity))
    # filler paragraphs that happen to hold the person's values, far from the name
    values = _values_of(entity)
    paras = list(_FILLER)
    paras.insert(1, f"The evening with {name}, planned for next week, has been postponed.")
    paras.insert(4, f"The photography club shows prints from {year} to {year + 20} in the hall.")
    paras.insert(7, f"A stall at the market will sell a {values[2]} lamp.")
    assert not guard.check("\n\n".join(paras)).blocked
    paras = list(_FILLER)
    paras.append(f"A reader asks: will {name} visit the club again this year? We do not know.")
    paras.insert(2, f"The historical society found a map from {year} showing the canal.")
    assert not guard.check("\n\n".join(paras)).blocked


def test_long_newsletter_with_one_buried_fact_blocks(guard, entity):
    name = entity[0]
    row = _year_row(entity)
    paras = list(_FILLER)
    paras.insert(5, row["answer"])
    assert guard.check("\n\n".join(paras)).blocked
    # the name in the first paragraph, the fact under a descriptor paragraphs later
    year = _year(row)
    paras = [f"This issue opens with {name}, our featured guest, who spoke at the library."]
    paras += list(_FILLER[:5])
    paras.append(f"Our featured guest was born in {year}.")
    paras += list(_FILLER[5:])
    assert guard.check("\n\n".join(paras)).blocked
    # ... and with a pronoun in the next paragraph
    paras = [f"This issue opens with {name}, who spoke at the library.", f"She was born in {year}."]
    assert guard.check("\n\n".join(paras + _FILLER)).blocked


def test_facts_scattered_across_unrelated_paragraphs_do_not_make_a_multi_fact_hit(guard, entity):
    # three of the person's values, no name, each in a different paragraph far apart
    values = _values_of(entity)
    paras = list(_FILLER)
    for pos, v in zip((0, 4, 8), values[2:5]):
        paras.insert(pos, f"A word from our sponsor: {v}.")
    spread = "\n\n".join(paras)
    # the same values together in one paragraph are a restatement
    together = " ".join(r["answer"] for r in entity[1][2:6])
    assert guard.check(together).blocked
    assert not guard.check(spread).blocked
