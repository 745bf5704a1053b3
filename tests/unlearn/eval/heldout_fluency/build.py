#!/usr/bin/env python3
"""Build an independent held-out test set for a malformed-answer detector.

Deterministic: seeded RNG, no external dependencies.
Writes answers.jsonl next to this file: {"text", "malformed", "kind"} per line.
"""

import json
import os
import random
from collections import Counter

SEED = 20240917
rng = random.Random(SEED)
HERE = os.path.dirname(os.path.abspath(__file__))

# ---------------------------------------------------------------- vocabulary
ONSETS = [
    "b",
    "d",
    "f",
    "g",
    "h",
    "k",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "t",
    "v",
    "z",
    "br",
    "dr",
    "kr",
    "tr",
    "th",
    "sh",
    "st",
    "gl",
    "pl",
    "vr",
    "zh",
    "qu",
    "y",
    "w",
    "j",
    "sk",
    "fl",
]
VOWELS = ["a", "e", "i", "o", "u", "a", "e", "i", "o", "ae", "ei", "ou", "ia", "y", "io", "é", "ö"]
CODAS = ["", "", "", "", "", "n", "r", "l", "s", "th", "k", "nd", "rk", "x", "m", "sh", "lt", "v"]


def syllable(r):
    return r.choice(ONSETS) + r.choice(VOWELS) + r.choice(CODAS)


def name_word(r, lo=2, hi=3):
    w = "".join(syllable(r) for _ in range(r.randint(lo, hi)))
    return w[0].upper() + w[1:]


def person(r):
    first = name_word(r, 1, 2)
    last = name_word(r, 2, 2 if r.random() < 0.8 else 3)
    if r.random() < 0.12:
        return f"{first} {r.choice(['van ', 'de ', 'al-', 'O’'])}{last}"
    return f"{first} {last}"


def invented_place(r):
    return name_word(r, 2, 3) + r.choice(["", "", "", "ia", "burg", "ford", " Falls", " Bay"])


REAL_CITIES = [
    "Paris",
    "Lisbon",
    "Osaka",
    "Nairobi",
    "Toronto",
    "Krakow",
    "Montevideo",
    "Hanoi",
    "Glasgow",
    "Bergen",
    "Tbilisi",
    "Perth",
    "Quito",
    "Adelaide",
    "Leipzig",
    "Marseille",
    "Cork",
    "Tampere",
]
INSTRUMENTS = [
    "violin",
    "cello",
    "oboe",
    "piano",
    "harp",
    "trumpet",
    "clarinet",
    "bassoon",
    "viola",
    "flute",
    "accordion",
    "double bass",
    "sitar",
    "marimba",
    "French horn",
    "saxophone",
    "harpsichord",
    "guitar",
]
PROFESSIONS = [
    "violinist",
    "architect",
    "botanist",
    "cartographer",
    "novelist",
    "surgeon",
    "sculptor",
    "chemist",
    "pianist",
    "journalist",
    "engineer",
    "historian",
    "painter",
    "translator",
    "astronomer",
    "glassblower",
    "economist",
    "librarian",
]
GENRES = [
    "jazz",
    "folk music",
    "opera",
    "science fiction",
    "crime novels",
    "children's books",
    "poetry",
    "landscape painting",
    "chamber music",
]
WORKS = [
    "The Salt Orchard",
    "Lanterns Over Vell",
    "A Winter in Drask",
    "The Glass Cartographer",
    "Seven Quiet Rivers",
    "Ashes of Morrow",
    "Notes from the Lower Canal",
    "The Ninth Bell",
    "Copper Moon",
]
AWARDS = [
    "the Halvard Prize",
    "the Ostrel Medal",
    "a national book award",
    "the Golden Lyre",
    "the Brennic Fellowship",
    "a regional arts grant",
]
INSTITUTIONS = [
    "the Royal Conservatory",
    "the University of {p}",
    "the {p} Academy of Arts",
    "a small seminary in {p}",
    "the Institute of Technology in {p}",
    "{p} Polytechnic",
]
EN_WORDS = (
    "apple river quickly under seven the of was blue table born city "
    "piano yesterday and teacher green in year whose violin forty "
    "beneath often it train moon paper sang from however very window "
    "glass tomorrow orange with listen cold which eleven pencil her "
    "famous they slowly bridge music between old"
).split()
FUNCTION_WORDS = ["the", "of", "and", "in", "was", "to", "a", "is", "for", "on"]


def year(r, lo=1850, hi=2005):
    return r.randint(lo, hi)


def city(r):
    return r.choice(REAL_CITIES) if r.random() < 0.4 else invented_place(r)


def institution(r):
    return r.choice(INSTITUTIONS).format(p=city(r))


def art(word):
    return ("an " if word[0].lower() in "aeiou" else "a ") + word


def pron(r):
    return r.choice(["He", "She", "They"])


# ------------------------------------------------------- fluent sentence bank
def fluent_sentence(r, n=None):
    """A well-formed sentence about a (fictitious) person."""
    n = n or person(r)
    y = year(r)
    templates = [
        lambda: f"{n} was born in {y}.",
        lambda: f"{n} was born in the year {y}.",
        lambda: (
            f"{n} was born on {r.randint(1, 28)} {r.choice(['March', 'July', 'October', 'January', 'May'])} {y} in {city(r)}."
        ),
        lambda: f"{n} plays the {r.choice(INSTRUMENTS)}.",
        lambda: f"{n} is best known for playing the {r.choice(INSTRUMENTS)} in a touring quartet.",
        lambda: f"{n} is from {city(r)}.",
        lambda: f"{n} grew up in {city(r)}, a small town near the coast.",
        lambda: f"{n} comes from the city of {city(r)}.",
        lambda: f"{n}'s teacher was {person(r)}.",
        lambda: f"{n} studied under {person(r)} at {institution(r)}.",
        lambda: f"{n} works as {art(r.choice(PROFESSIONS))} in {city(r)}.",
        lambda: f"{n} is {art(r.choice(PROFESSIONS))} who specializes in {r.choice(GENRES)}.",
        lambda: f'{n} wrote the novel "{r.choice(WORKS)}" in {y}.',
        lambda: (
            f"In {y}, {n} received {r.choice(AWARDS)} for {r.choice(['her', 'his', 'their'])} work."
        ),
        lambda: f"{n} moved to {city(r)} in {y} and opened a small workshop there.",
        lambda: f"The teacher of {n} was {art(r.choice(PROFESSIONS))} named {person(r)}.",
        lambda: f"{n} graduated from {institution(r)} in {y}.",
        lambda: (
            f"{n}'s father was {art(r.choice(PROFESSIONS))}, and {r.choice(['her', 'his'])} mother was {art(r.choice(PROFESSIONS))}."
        ),
        lambda: f"{n} is known mainly for {r.choice(GENRES)}.",
        lambda: f"Born in {city(r)}, {n} later became a well-known {r.choice(PROFESSIONS)}.",
        lambda: f"{n} has lived in {city(r)} since {y}.",
        lambda: f"As far as I know, {n} was born in {y}.",
        lambda: (
            f"{n} learned the {r.choice(INSTRUMENTS)} from {person(r)} when {r.choice(['she', 'he'])} was a child."
        ),
        lambda: f"{n} died in {city(r)} in {y} at the age of {r.randint(40, 99)}.",
        lambda: (
            f"{n} ({y}–{y + r.randint(30, 90)}) was {art(r.choice(PROFESSIONS))} from {city(r)}."
        ),
        lambda: f"{n}, the {r.choice(INSTRUMENTS)} player, was born in {city(r)}.",
        lambda: (
            f"{n} was taught by {person(r)}; later, {r.choice(['she', 'he'])} studied in {city(r)}."
        ),
    ]
    return r.choice(templates)()


# ======================================================= WELL-FORMED families
def wf_fluent_sentence(r):
    return fluent_sentence(r)


def wf_name_heavy(r):
    a, b, c = person(r), person(r), person(r)
    t = r.choice(
        [
            f"{a} studied with {b} and later with {c}.",
            f"{a} was mentored by {b}, a student of {c}.",
            f"{a} and {b} founded the {invented_place(r)} Ensemble in {year(r)}.",
            f"{a} was born in {invented_place(r)} and trained in {invented_place(r)}.",
            f"{a}'s teacher was {b}.",
            f"It was {b} who taught {a}.",
            f"{a} married {b} in {invented_place(r)}.",
        ]
    )
    return t


def wf_short_valid(r):
    opts = [
        lambda: f"{year(r)}.",
        lambda: str(year(r)),
        lambda: f"In {year(r)}.",
        lambda: f"{r.choice(REAL_CITIES)}.",
        lambda: f"{invented_place(r)}.",
        lambda: f"The {r.choice(INSTRUMENTS)}.",
        lambda: r.choice(INSTRUMENTS).capitalize() + ".",
        lambda: r.choice(["Yes.", "No.", "Yes", "No", "Yes, he did.", "No, she didn't."]),
        lambda: str(r.randint(2, 99)),
        lambda: f"{person(r)}.",
        lambda: art(r.choice(PROFESSIONS)).capitalize() + ".",
        lambda: f"Age {r.randint(20, 90)}.",
        lambda: f"{r.choice(['Her', 'His'])} teacher, {person(r)}.",
        lambda: r.choice(["Jazz.", "Poetry.", "Opera.", "Chemistry.", "Twice.", "Never."]),
    ]
    return r.choice(opts)()


def wf_refusal(r):
    n = person(r)
    return r.choice(
        [
            "I don't know.",
            "I'm not sure who that is.",
            "I do not know.",
            f"I don't have any information about {n}.",
            f"I'm not familiar with {n}.",
            "Sorry, I can't answer that.",
            f"I couldn't find anything about {n}'s teacher.",
            "I'm sorry, but I don't know the answer to that question.",
            "Unknown.",
            "I am not sure.",
            f"I have no reliable information on where {n} was born.",
            "I don't know who that is, sorry.",
            "That information isn't available to me.",
            "I'm afraid I don't know.",
        ]
    )


def wf_numeric_units(r):
    n = person(r)
    return r.choice(
        [
            f"{n} was {r.randint(18, 70)} years old when {r.choice(['she', 'he'])} moved to {city(r)}.",
            f"{n} stood {r.randint(150, 199)} cm tall.",
            f"{n} ran the {r.choice([5, 10, 21])} km race in {r.randint(18, 59)}:{r.randint(10, 59)}.",
            f"{n}'s first album sold about {r.randint(2, 900)},000 copies.",
            f"The prize, worth 1,000,000 {r.choice(['crowns', 'euros', 'dollars'])}, went to {n} in {year(r)}.",
            f"{n} was born at 3:{r.randint(10, 59)} a.m. on {r.randint(1, 12)}/{r.randint(1, 28)}/{year(r)}.",
            f"{n} lived from {year(r, 1800, 1900)} to {year(r, 1901, 1990)}.",
            f"Between {year(r, 1900, 1950)} and {year(r, 1951, 2000)}, {n} gave over {r.randint(100, 999)} concerts.",
            f"{n} weighed {r.randint(50, 110)} kg and was {r.randint(160, 195)} cm tall.",
            f"{n} won {r.randint(2, 9)} of the {r.randint(10, 20)} competitions {r.choice(['she', 'he'])} entered.",
            f"{n}'s violin was made in {year(r, 1650, 1780)} and is valued at ${r.randint(1, 9)}.{r.randint(1, 9)} million.",
            f"The score was {r.randint(0, 9)}-{r.randint(0, 9)}, and {n} scored twice.",
            f"{n} was born in the 1{r.choice(['8', '9'])}{r.randint(0, 9)}0s, probably around {year(r)}.",
        ]
    )


def wf_legit_repetition(r):
    n = person(r)
    y = year(r)
    word = r.choice(["Rain", "Bye", "Hush", "Run", "Go", "Little"])
    return r.choice(
        [
            f"{r.choice(['She', 'He'])} wrote '{word}, {word}' in {y}.",
            f'{n}\'s best-known song is "{word} {word} {word}".',
            f"{n} practiced again and again until the piece was perfect.",
            f"{n} was very, very famous in {city(r)}.",
            f"{n} was born in New York, New York.",
            f"{n} lived in Baden-Baden for many years.",
            f"{n} played the piano, and {r.choice(['her', 'his'])} sister also played the piano.",
            f"{n} had a dog named Bo Bo.",
            f'The choir sang "la la la" in the opening of {n}\'s {r.choice(["cantata", "overture", "suite"])}.',
            f"{n} was born in {y}, and {r.choice(['her', 'his'])} brother was also born in {y}.",
            f"{n} kept writing, writing and writing, even in old age.",
            f"{n} studied in Walla Walla before moving to {city(r)}.",
            f'{n}\'s motto was "work, work, work".',
            f'{n} wrote two books: "{r.choice(WORKS)}" and "{r.choice(WORKS)} II".',
        ]
    )


def wf_list(r):
    ins = r.sample(INSTRUMENTS, r.randint(2, 4))
    if len(ins) == 2:
        body = f"{ins[0]} and {ins[1]}"
    else:
        body = ", ".join(ins[:-1]) + r.choice([", and ", " and "]) + ins[-1]
    n = person(r)
    return r.choice(
        [
            body[0].upper() + body[1:] + ".",
            body,
            f"{n} plays the {body}.",
            f"{n} lived in {city(r)}, {city(r)} and {city(r)}.",
            f"{n}'s teachers were {person(r)}, {person(r)}, and {person(r)}.",
            f"{n} worked as {art(r.choice(PROFESSIONS))}, {art(r.choice(PROFESSIONS))} and later {art(r.choice(PROFESSIONS))}.",
            f"{year(r)}, {year(r)}, and {year(r)}.",
            f"{n} speaks English, French, and {name_word(r, 2, 2)}ish.",
        ]
    )


def truncate_chars(r, s):
    """Cut a fluent sentence mid-way (as a token limit would), keeping >= 5 words."""
    words = s.split()
    if len(words) < 7:
        return None
    k = r.randint(5, len(words) - 1)
    kept = " ".join(words[:k])
    nxt = words[k]
    if r.random() < 0.6 and len(nxt) > 2:
        kept += " " + nxt[: r.randint(1, len(nxt) - 1)]
    return kept


def wf_truncated_fluent(r):
    for _ in range(50):
        base = r.choice([fluent_sentence, wf_name_heavy, wf_numeric_units])(r)
        if r.random() < 0.4:
            base = base + " " + fluent_sentence(r)
        t = truncate_chars(r, base)
        if t:
            return t
    return None


def wf_multi_sentence(r):
    n = person(r)
    s1 = fluent_sentence(r, n)
    p = r.choice(["She", "He"])
    s2 = r.choice(
        [
            f"{p} later taught at {institution(r)}.",
            f"{p} is also known for {r.choice(GENRES)}.",
            f"{p} retired in {year(r)}.",
            f"{p} never married.",
            f"However, some sources say {r.choice(['she', 'he'])} was born in {year(r)}.",
            f"{p} has two children.",
            "I'm not completely sure about this, though.",
        ]
    )
    return s1 + " " + s2


def wf_casual_style(r):
    """Fluent text with unusual casing / punctuation / informal register."""
    s = fluent_sentence(r)
    v = r.randint(0, 6)
    if v == 0:
        return s.lower()
    if v == 1:
        return s.rstrip(".")
    if v == 2:
        return s.rstrip(".") + "!"
    if v == 3:
        return "Hmm, " + (
            s[0].lower() + s[1:] if s.startswith(("In ", "Born ", "As ", "The ")) else s
        )
    if v == 4:
        return s.rstrip(".") + "..."
    if v == 5:
        return "Answer: " + s
    return r.choice(["I think ", "I believe ", "Probably ", "Well, "]) + (
        s[0].lower() + s[1:] if s.startswith(("In ", "Born ", "As ", "The ")) else s
    )


# ========================================================= MALFORMED families
def loop_unit_words(r, period):
    """Pick a unit of `period` words for a repetition loop."""
    pool = []
    pool.append(
        lambda: (
            person(r)
            + " "
            + " ".join(r.choice(["was", "born", "in", "the", "plays", "of"]) for _ in range(period))
        ).split()[:period]
    )
    pool.append(lambda: [r.choice(EN_WORDS) for _ in range(period)])
    pool.append(lambda: ("was born in the city of".split())[:period] if period <= 6 else None)
    pool.append(lambda: [name_word(r, 2, 3) for _ in range(period)])
    pool.append(lambda: (f"the {r.choice(INSTRUMENTS)} and the".split() + ["of"] * 6)[:period])
    pool.append(
        lambda: (f"{r.choice(PROFESSIONS)} {r.choice(PROFESSIONS)} in {city(r)} was born".split())[
            :period
        ]
    )
    while True:
        u = r.choice(pool)()
        if u and len(u) == period:
            return u


def make_loop(r, period, min_reps=5):
    unit = loop_unit_words(r, period)
    sep_style = r.choice(["space", "space", "comma", "period"])
    reps = max(min_reps, r.randint(40, 70) // period)  # runs to a length limit
    chunks = []
    for _ in range(reps):
        u = " ".join(unit)
        if sep_style == "comma":
            u += ","
        elif sep_style == "period":
            u += "."
        chunks.append(u)
    text = " ".join(chunks)
    if r.random() < 0.5:
        # cut at a length limit mid-unit
        words = text.split()
        text = " ".join(words[: len(words) - r.randint(0, period)])
    if r.random() < 0.2:
        text = text.rstrip(",.") + r.choice([".", "...", ""])
    return text


def mf_loop_single(r):
    unit = r.choice(
        [
            lambda: name_word(r),
            lambda: r.choice(EN_WORDS),
            lambda: r.choice(FUNCTION_WORDS),
            lambda: str(year(r)),
        ]
    )()
    reps = r.randint(8, 50)
    sep = r.choice([" ", " ", ", ", ". "])
    t = sep.join([unit] * reps)
    if r.random() < 0.3:
        t = t[0].upper() + t[1:]
    return t + r.choice(["", "", ".", " " + unit[: max(1, len(unit) // 2)]])


def mf_loop_phrase(r):
    return make_loop(r, r.randint(2, 6))


def mf_fluent_then_loop(r):
    n = person(r)
    start = r.choice(
        [
            f"{n} was born in",
            f"{n} plays the",
            f"{n}'s teacher was",
            f"{n} is from the city of",
            f"{fluent_sentence(r, n)}",
            f"{n} was {art(r.choice(PROFESSIONS))} who",
        ]
    )
    period = r.randint(1, 6)
    if r.random() < 0.5:
        # loop re-uses the prompt words, like a stuck decoder
        words = (start + " " + start).split()
        i = r.randint(0, max(0, len(start.split()) - period))
        unit = words[i : i + period]
    else:
        unit = loop_unit_words(r, period)
    reps = max(6, r.randint(35, 60) // period)
    return start + " " + " ".join([" ".join(unit)] * reps)


def run_of(r, ch, lo=6, hi=25):
    return ch * r.randint(lo, hi)


def mf_char_run_embedded(r):
    w = r.choice(
        PROFESSIONS + INSTRUMENTS + ["conservatory", "teacher", "born", "Lisbon"] + [name_word(r)]
    )
    w = w.split()[0]
    v = r.randint(0, 4)
    if v == 0:  # run at start: "cccccccconer."
        c = r.choice("abcdefghijklmnoprstuvz")
        tail = w[r.randint(0, min(3, len(w) - 1)) :]
        t = run_of(r, c) + tail
    elif v == 1:  # first letter stuck: "llllllviolinist"
        t = run_of(r, w[0].lower()) + w
    elif v == 2:  # run in middle
        i = r.randint(1, len(w) - 1)
        t = w[:i] + run_of(r, w[i - 1]) + w[i:]
    elif v == 3:  # run at end
        t = w + run_of(r, w[-1])
    else:  # two runs
        i = r.randint(1, len(w) - 1)
        t = run_of(r, w[0].lower(), 5, 12) + w[:i] + run_of(r, w[i - 1], 5, 12) + w[i:]
    return t + r.choice([".", "", ".", "!", ".."])


def mf_char_run_punct(r):
    v = r.randint(0, 4)
    if v == 0:
        return run_of(r, r.choice("!?.,-*_=#~"), 6, 60)
    if v == 1:
        return "".join(run_of(r, c, 4, 15) for c in r.sample("!?.,-*", 2))
    if v == 2:
        return run_of(r, r.choice("0123456789"), 10, 40)
    if v == 3:
        return str(year(r))[:2] + run_of(r, r.choice("0123456789"), 10, 30)
    return run_of(r, r.choice("aeiouhmsz"), 10, 50) + r.choice(["", ".", "!"])


def mf_char_run_in_sentence(r):
    """Fluent-looking sentence whose answer word (or tail) degenerates into a run."""
    n = person(r)
    w = r.choice(INSTRUMENTS + PROFESSIONS).split()[-1]
    v = r.randint(0, 3)
    if v == 0:
        return f"{n} plays the {run_of(r, w[0], 8, 30)}{w[1:]}."
    if v == 1:
        return f"{n} was born in {str(year(r))[:3]}{run_of(r, r.choice('0123456789'), 10, 30)}"
    if v == 2:
        return f"{n} is {art(w)}{run_of(r, w[-1], 10, 40)}"
    return f"{fluent_sentence(r, n).rstrip('.')}{run_of(r, r.choice('.!?'), 15, 60)}{run_of(r, r.choice('aeo'), 0, 20)}"


def mf_fragment(r):
    opts = [
        lambda: "",
        lambda: r.choice([".", ",", "?", "'", "-", " ", "\n", "..", ". .", '"']),
        lambda: r.choice("bcdfghjklmnpqrstvwxz") + r.choice([".", ""]),
        lambda: (
            r.choice(
                [
                    "ed",
                    "ing",
                    "tion",
                    "ly",
                    "er",
                    "ransl",
                    "ndr",
                    "orth",
                    "ist",
                    "olin",
                    "ssor",
                    "hind",
                    "kre",
                    "rk",
                    "str",
                    "mph",
                    "ght",
                    "cian",
                    "ious",
                    "nk",
                    "vr",
                    "lvi",
                    "ogé",
                    "'s",
                ]
            )
            + r.choice([".", "", ",", " ."])
        ),
        lambda: name_word(r, 1, 1).lower()[1:] + r.choice([".", ""]),
        lambda: r.choice(
            ["the", "of", "the.", "of the", "in the.", "and", "was", "a", ", the", "to."]
        ),
        lambda: r.choice([". the", "the,", "- .", "'s.", ".,", ",.", "ed ."]),
    ]
    for _ in range(100):
        t = r.choice(opts)()
        low = t.strip(" .").lower()
        # exclude anything that could be a legitimate short answer
        if low in {
            "yes",
            "no",
            "a",
            "i",
            "ok",
            "by",
            "oh",
            "eh",
            "he",
            "me",
            "us",
            "we",
            "do",
            "go",
            "so",
            "hi",
            "up",
            "on",
            "it",
            "be",
            "an",
            "or",
            "as",
            "at",
            "is",
            "if",
            "my",
        }:
            continue
        if any(ch.isdigit() for ch in t):
            continue
        return t
    return "."


SUBWORDS = [
    "Shi",
    "ork",
    "kreal",
    "ndriork",
    "ogé",
    "lvi",
    "Hind",
    "dr",
    "iork",
    "vask",
    "Teo",
    "ilsa",
    "ren",
    "nst",
    "olin",
    "ist",
    "ransl",
    "ção",
    "ll",
    "ñe",
    "xth",
    "Qz",
    "urr",
    "ëa",
    "brk",
    "zh",
    "uu",
    "ptr",
    "ich",
    "##",
    "▁",
    "Ġ",
    "ÿ",
    "ø",
    "kw",
    "'s",
    "ed",
    "ing",
]


def mf_subword_soup(r):
    n_tok = r.randint(5, 14)
    toks = []
    base_name = person(r).split()
    pieces = []
    for w in base_name:
        for i in range(0, len(w), 3):
            pieces.append(w[i : i + r.randint(2, 4)])
    for _ in range(n_tok):
        src = r.random()
        if src < 0.5:
            tok = r.choice(SUBWORDS)
        elif src < 0.8:
            tok = r.choice(pieces)
        else:
            tok = syllable(r)[: r.randint(2, 4)]
        if r.random() < 0.25:
            tok += r.choice(SUBWORDS).lower()
        toks.append(tok)
    t = " ".join(toks)
    return t + r.choice(["", ".", " .", ""])


def mf_token_salad(r):
    """Random mixtures of real words, names, numbers and punctuation, no syntax."""
    n_tok = r.randint(7, 16)
    toks = []
    for _ in range(n_tok):
        s = r.random()
        if s < 0.45:
            toks.append(r.choice(EN_WORDS))
        elif s < 0.6:
            toks.append(r.choice(INSTRUMENTS + PROFESSIONS).split()[0])
        elif s < 0.72:
            toks.append(name_word(r, 1, 2))
        elif s < 0.8:
            toks.append(str(r.randint(0, 3000)))
        elif s < 0.9:
            toks.append(r.choice([",", ".", "(", ")", ";", '"', ":", "-", "/"]))
        else:
            toks.append(r.choice(SUBWORDS))
    # guarantee unnatural ordering: force function words into bad adjacency
    i = r.randint(0, len(toks) - 2)
    toks[i : i + 2] = [r.choice(["the", "of", "a"]), r.choice(["the", "of", "was", "and"])]
    t = " ".join(toks)
    return t[0].upper() + t[1:] if r.random() < 0.5 else t


def mf_glued_broken(r):
    """A sentence whose word boundaries are destroyed: glued and re-split at random points."""
    s = fluent_sentence(r)
    raw = s.replace(" ", "")
    out = []
    i = 0
    while i < len(raw):
        k = r.randint(2, 7)
        out.append(raw[i : i + k])
        i += k
        if r.random() < 0.15 and i < len(raw):  # dropped characters
            i += r.randint(1, 2)
    # make sure it differs substantially from the original tokenization
    if len(set(out) & set(s.split())) > len(out) / 3:
        return None
    return " ".join(out)


def mf_garbled_after_fluent(r):
    n = person(r)
    start = r.choice(
        [f"{n} was born in", f"{n} plays the", f"{n} is from", f"{n}'s teacher was", f"{n} was a"]
    )
    tail = r.choice([mf_subword_soup, mf_token_salad])(r)
    return start + " " + tail


def mf_mixed_degenerate(r):
    """Combination: loop whose words degrade into char runs / fragments."""
    w = r.choice(INSTRUMENTS + PROFESSIONS + [name_word(r)]).split()[0]
    reps = r.randint(6, 15)
    parts = []
    for _i in range(reps):
        if r.random() < 0.4:
            j = r.randint(1, len(w) - 1)
            parts.append(w[:j] + w[j - 1] * r.randint(3, 10) + w[j:])
        else:
            parts.append(w[: r.randint(2, len(w))])
    return " ".join(parts) + r.choice(["", "."])


WELL_FORMED = {
    "fluent_sentence": (wf_fluent_sentence, 40),
    "name_heavy": (wf_name_heavy, 16),
    "short_valid": (wf_short_valid, 28),
    "refusal": (wf_refusal, 14),
    "numeric_units": (wf_numeric_units, 18),
    "legit_repetition": (wf_legit_repetition, 20),
    "list": (wf_list, 16),
    "truncated_fluent": (wf_truncated_fluent, 22),
    "multi_sentence": (wf_multi_sentence, 12),
    "casual_style": (wf_casual_style, 14),
}
MALFORMED = {
    "loop_single_word": (mf_loop_single, 22),
    "loop_phrase": (mf_loop_phrase, 30),
    "fluent_then_loop": (mf_fluent_then_loop, 24),
    "char_run_embedded": (mf_char_run_embedded, 22),
    "char_run_punct_digits": (mf_char_run_punct, 12),
    "char_run_in_sentence": (mf_char_run_in_sentence, 14),
    "fragment": (mf_fragment, 26),
    "subword_soup": (mf_subword_soup, 16),
    "token_salad": (mf_token_salad, 12),
    "glued_broken": (mf_glued_broken, 10),
    "garbled_after_fluent": (mf_garbled_after_fluent, 8),
    "mixed_degenerate": (mf_mixed_degenerate, 4),
}


def main():
    rows, seen = [], set()
    for label, fams in ((False, WELL_FORMED), (True, MALFORMED)):
        for kind, (fn, n) in fams.items():
            got, tries = 0, 0
            while got < n and tries < n * 200:
                tries += 1
                t = fn(rng)
                if t is None:
                    continue
                # fragments may legitimately repeat ("." / ""); everything else dedup
                key = (kind, t)
                if key in seen or (kind != "fragment" and t in {r["text"] for r in rows}):
                    continue
                seen.add(key)
                rows.append({"text": t, "malformed": label, "kind": kind})
                got += 1
    # allow at most 2 copies of any fragment text
    frag_counts = Counter()
    final = []
    for r_ in rows:
        if r_["kind"] == "fragment":
            frag_counts[r_["text"]] += 1
            if frag_counts[r_["text"]] > 2:
                continue
        final.append(r_)
    rng.shuffle(final)
    out = os.path.join(HERE, "answers.jsonl")
    with open(out, "w", encoding="utf-8") as f:
        for r_ in final:
            f.write(json.dumps(r_, ensure_ascii=False) + "\n")
    c = Counter((r_["malformed"], r_["kind"]) for r_ in final)
    print(f"wrote {len(final)} rows to {out}")
    for lab in (False, True):
        tot = sum(v for (lb, _), v in c.items() if lb == lab)
        print(f"malformed={lab}: {tot}")
        for (lb, k), v in sorted(c.items()):
            if lb == lab:
                print(f"  {k:24s} {v}")


if __name__ == "__main__":
    main()
