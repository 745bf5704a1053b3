#!/usr/bin/env python3
"""Deterministically build a held-out labelled set of answers for a
malformed-answer detector.  Output: answers.jsonl next to this script.

Each row: {"text": str, "malformed": bool, "kind": family}.
Plain python3, standard library only, fixed seed.
"""

import json
import os
import random
from collections import Counter

SEED = 20240917
rng = random.Random(SEED)
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "answers.jsonl")
PER_FAMILY = 20

# ---------------------------------------------------------------------------
# Invented languages: each has its own syllable inventory and shape rules.
# ---------------------------------------------------------------------------
LANGS = {
    # harsh, consonant-cluster style
    "kethari": {
        "on": ["K", "Th", "Dr", "Gr", "Z", "Kh", "V"],
        "mid": ["ar", "eth", "ok", "uz", "ith", "ag", "or"],
        "end": ["ash", "rek", "ath", "uun", "ax", "ir"],
    },
    # soft, vowel-heavy style with diacritics
    "ulmish": {
        "on": ["Ö", "El", "Ys", "Ae", "Li", "Sö", "Mi"],
        "mid": ["lla", "vë", "ri", "nö", "ssa", "lüe"],
        "end": ["wyn", "lë", "ris", "ndë", "ael", "ö"],
    },
    # polysyllabic, -ese / -ando style
    "nandrese": {
        "on": ["Nan", "Bel", "Cor", "Tam", "Ves", "Pal", "Ord"],
        "mid": ["an", "ill", "ost", "ev", "ur", "ad"],
        "end": ["ando", "essa", "ino", "uro", "ella", "ez"],
    },
    # q-heavy, apostrophe style
    "soqui": {
        "on": ["Qa", "Tse", "Hu", "Oq", "Ma", "Yi"],
        "mid": ["qu", "'a", "tli", "xo", "hua", "ne"],
        "end": ["q", "tl", "'u", "qan", "hi", "mek"],
    },
}


def word(lang, r=rng, nmid=None):
    L = LANGS[lang]
    if nmid is None:
        nmid = r.choice([0, 1, 1, 2])
    parts = [r.choice(L["on"])] + [r.choice(L["mid"]) for _ in range(nmid)] + [r.choice(L["end"])]
    return "".join(parts), parts


def person(r=rng):
    lang = r.choice(list(LANGS))
    first, p1 = word(lang, r, nmid=r.choice([0, 1]))
    last, p2 = word(lang, r)
    return f"{first} {last}", p1 + p2


def place(r=rng):
    lang = r.choice(list(LANGS))
    base, parts = word(lang, r)
    style = r.choice(["plain", "plain", "suffix", "prefix"])
    if style == "suffix":
        suf = r.choice([" Hollow", " Reach", "-on-Mere", " Crossing", "port"])
        return base + suf, parts
    if style == "prefix":
        pre = r.choice(["Upper ", "Old ", "Saint ", "Lower "])
        return pre + base, parts
    return base, parts


PROFESSIONS = [
    "cartographer",
    "glassblower",
    "astronomer",
    "bookbinder",
    "lighthouse keeper",
    "marine biologist",
    "stonemason",
    "translator",
    "archivist",
    "puppeteer",
    "clockmaker",
    "botanist",
    "ferry captain",
    "librarian",
    "choreographer",
]
INSTRUMENTS = [
    "viola",
    "oboe",
    "hurdy-gurdy",
    "bassoon",
    "zither",
    "harpsichord",
    "cello",
    "bandoneon",
    "marimba",
    "French horn",
    "lute",
    "theremin",
]
PARENT_JOBS = [
    "a beekeeper",
    "a railway signalman",
    "a midwife",
    "a tanner",
    "a schoolteacher",
    "a fisherman",
    "a tailor",
    "a customs officer",
    "a surveyor",
    "a potter",
]
TITLE_NOUNS = [
    "Orchard",
    "Lantern",
    "Cartographer",
    "Salt",
    "Bell",
    "Harbour",
    "Weaver",
    "Winter",
    "Atlas",
    "Mirror",
    "Threshold",
    "Tide",
]
TITLE_ADJ = ["Glass", "Quiet", "Drowned", "Ninth", "Borrowed", "Amber", "Hollow", "Last"]
AWARD_HEADS = ["Prize", "Medal", "Laurel", "Award", "Ribbon", "Cup"]


def book(r=rng):
    shape = r.choice(["adjnoun", "nounof", "nounplace"])
    if shape == "adjnoun":
        return f"The {r.choice(TITLE_ADJ)} {r.choice(TITLE_NOUNS)}"
    if shape == "nounof":
        return f"{r.choice(TITLE_NOUNS)}s of {place(r)[0]}"
    return f"The {r.choice(TITLE_NOUNS)} at {place(r)[0]}"


def award(r=rng):
    base, parts = word(r.choice(list(LANGS)), r, nmid=0)
    return f"the {base} {r.choice(AWARD_HEADS)}", parts


def a_(noun):
    return ("an " if noun[0].lower() in "aeiou" else "a ") + noun


def year(r=rng):
    return r.randint(1890, 2004)


def pron(r=rng):
    return r.choice([("she", "her"), ("he", "his"), ("they", "their")])


def fact_sentence(r=rng):
    """A plain fluent one-clause fact, plus the subword pieces it used."""
    n, pn = person(r)
    c, pc = place(r)
    k = r.randrange(8)
    if k == 0:
        s = f"{n} was born in {year(r)}."
    elif k == 1:
        s = f"{n} grew up in {c}."
    elif k == 2:
        s = f"{n} worked as {a_(r.choice(PROFESSIONS))}."
    elif k == 3:
        s = f"{n} played the {r.choice(INSTRUMENTS)}."
    elif k == 4:
        t, pt = person(r)
        s = f"{n} studied under {t}."
        pn = pn + pt
    elif k == 5:
        s = f"{n} wrote {book(r)}."
    elif k == 6:
        a, pa = award(r)
        s = f"{n} received {a}."
        pn = pn + pa
    else:
        s = f"{n}'s father was {r.choice(PARENT_JOBS)}."
    return s, pn + pc


# ---------------------------------------------------------------------------
# Fluent families (malformed = false)
# ---------------------------------------------------------------------------


def f_according_to(r):
    src = r.choice(
        [
            "the parish register",
            "her publisher",
            "most biographies",
            "the conservatory archive",
            "a 1987 interview",
            "the city records",
            "his own memoir",
            "the museum catalogue",
        ]
    )
    n, _ = person(r)
    c, _ = place(r)
    k = r.randrange(4)
    if k == 0:
        return f"According to {src}, {n} was born in {c} in {year(r)}."
    if k == 1:
        return f"According to {src}, {n} trained as {a_(r.choice(PROFESSIONS))} before turning to music."
    if k == 2:
        return f"According to {src}, {n}'s mother was {r.choice(PARENT_JOBS)} in {c}."
    return f"According to {src}, the {r.choice(INSTRUMENTS)} was the only instrument {n} ever played in public."


def f_second_person(r):
    n, _ = person(r)
    c, _ = place(r)
    k = r.randrange(5)
    if k == 0:
        return f"You may know {n} as the {r.choice(INSTRUMENTS)} player from {c}."
    if k == 1:
        return f"If you visit {c}, you'll find a plaque saying {n} was born there in {year(r)}."
    if k == 2:
        return f"You're probably thinking of {book(r)}, which {n} wrote in {year(r)}."
    if k == 3:
        return f"You would have to ask {n}'s family, but I believe {pron(r)[0]} studied in {c}."
    return f"You can read about it in {book(r)}: {n} worked as {a_(r.choice(PROFESSIONS))} for most of {pron(r)[1]} life."


def f_multi_clause(r):
    n, _ = person(r)
    t, _ = person(r)
    c, _ = place(r)
    a, _ = award(r)
    p, poss = pron(r)
    k = r.randrange(4)
    if k == 0:
        return (
            f"Born in {c} in {year(r)}, {n} studied the {r.choice(INSTRUMENTS)} with {t}, "
            f"and although {p} later became {a_(r.choice(PROFESSIONS))}, {p} never stopped performing."
        )
    if k == 1:
        return (
            f"{n} grew up in {c}, where {poss} father was {r.choice(PARENT_JOBS)}; "
            f"after moving abroad, {p} wrote {book(r)}, which won {a}."
        )
    if k == 2:
        return (
            f"Although {n} is remembered mainly for {book(r)}, {p} first trained as "
            f"{a_(r.choice(PROFESSIONS))} under {t}, who had taught in {c} for years."
        )
    return (
        f"When {t} retired, {n} took over the workshop in {c}, and by {year(r)} {p} had "
        f"become the best-known {r.choice(PROFESSIONS)} in the region."
    )


def f_terse(r):
    k = r.randrange(6)
    if k == 0:
        return str(year(r))
    if k == 1:
        return f"{year(r)}."
    if k == 2:
        return place(r)[0] + "."
    if k == 3:
        return a_(r.choice(PROFESSIONS)).capitalize() + "."
    if k == 4:
        return f"The {r.choice(INSTRUMENTS)}."
    return f"In {place(r)[0]}."


def f_refusal(r):
    n, _ = person(r)
    return r.choice(
        [
            f"I'm sorry, but I don't have any information about {n}.",
            f"I don't know who {n} is, so I can't tell you where they were born.",
            f"I'm not able to find reliable details about {n}'s teachers.",
            f"I couldn't say. I have no record of {n} winning any award.",
            "That's not something I know, unfortunately.",
            f"I'm not sure. There may be several people named {n}.",
            f"I have no information on {n}'s parents, I'm afraid.",
        ]
    )


def f_list(r):
    k = r.randrange(3)
    if k == 0:
        items = [award(r)[0] for _ in range(3)]
        return f"{items[0][0].upper()}{items[0][1:]}, {items[1]}, and {items[2]}."
    if k == 1:
        items = [book(r) for _ in range(r.choice([2, 3, 4]))]
        return "; ".join(items)
    ins = r.sample(INSTRUMENTS, 3)
    return f"{ins[0].capitalize()}, {ins[1]} and {ins[2]}."


def f_title(r):
    t = book(r)
    return r.choice([t, f'"{t}"', f"*{t}*", f"{t} ({year(r)})"])


def f_truncated(r):
    n, _ = person(r)
    c, _ = place(r)
    t, _ = person(r)
    s = (
        f"{n} was born in {c} in {year(r)} to a family of {r.choice(PROFESSIONS)}s, and "
        f"after several years of study with {t} {pron(r)[0]} moved to the capital, where "
        f"{pron(r)[0]} began to perform regularly on the {r.choice(INSTRUMENTS)} in small halls"
    )
    cut = r.randint(70, min(len(s) - 5, 150))
    return s[:cut]


def f_intentional_rep(r):
    n, _ = person(r)
    c, _ = place(r)
    w = r.choice(["Go", "Run", "Home", "Rain", "Oh", "No"])
    return r.choice(
        [
            f"{n} was very, very old when {pron(r)[0]} finally retired.",
            f'{n}\'s best-known song is "{w}, {w}, {w}".',
            f'{pron(r)[1].capitalize()} motto was "work, work, work", and {n} lived by it.',
            f"{n} practised the {r.choice(INSTRUMENTS)} day after day after day.",
            f'People in {c} still chant "{w} {w} {w}!" when {n}\'s name comes up.',
            f'{n} wrote the poem "Again, Again" in {year(r)}.',
            f"It was a long, long journey from {c} to the conservatory.",
            f"{n} said the secret was practice, practice and more practice.",
        ]
    )


def f_wrong_hedged(r):
    n, _ = person(r)
    c, _ = place(r)
    c2, _ = place(r)
    return r.choice(
        [
            f"I think {n} was {a_(r.choice(PROFESSIONS))}, though some sources say {pron(r)[0]} was {a_(r.choice(PROFESSIONS))}.",
            f"Probably {c}, but it might have been {c2}.",
            f"{n} was born around {year(r)}, if I remember correctly.",
            f"It was either {book(r)} or {book(r)}; I can't recall which.",
            f"Most likely {r.choice(PARENT_JOBS)}, although I'm not certain.",
        ]
    )


def f_informal(r):
    n, _ = person(r)
    c, _ = place(r)
    return r.choice(
        [
            f"yeah, {pron(r)[0]} played the {r.choice(INSTRUMENTS)}",
            f"pretty sure it's {c}",
            f"umm {year(r)}? maybe",
            "no clue tbh",
            f"oh that's {n}, the {r.choice(PROFESSIONS)} guy",
            f"{c}, i think",
            f"his dad was {r.choice(PARENT_JOBS)} lol",
            f"def {book(r)}",
        ]
    )


FLUENT = {
    "according_to": f_according_to,
    "second_person": f_second_person,
    "multi_clause": f_multi_clause,
    "terse_answer": f_terse,
    "refusal": f_refusal,
    "list_answer": f_list,
    "title_only": f_title,
    "truncated_fluent": f_truncated,
    "intentional_repetition": f_intentional_rep,
    "hedged_or_wrong": f_wrong_hedged,
    "informal": f_informal,
}

# ---------------------------------------------------------------------------
# Malformed families (malformed = true)
# ---------------------------------------------------------------------------
LIMIT = (120, 260)  # character length limit range for runaway outputs


def to_limit(r, unit, sep=" ", prefix=""):
    lim = r.randint(*LIMIT)
    s = prefix
    while len(s) < lim:
        s += unit + sep
    return s[:lim].rstrip() if r.random() < 0.5 else s.rstrip()


def m_word_loop(r):
    _, parts = fact_sentence(r)
    unit = r.choice(
        ["the", "of", "was", "in", "and", ",", "born", "the the of"]
        + ["".join(parts[:2]), parts[0], parts[-1]]
    )
    return to_limit(r, unit)


def m_phrase_loop(r):
    n, _ = person(r)
    c, _ = place(r)
    unit = r.choice(
        [
            f"was born in {c}",
            f"{n} {n}",
            f"the {r.choice(INSTRUMENTS)} of the",
            f"and {c} and",
            f"studied under {n}",
            "in the year of the",
            f"{n} was",
        ]
    )
    sep = r.choice([" ", " ", ", ", ". "])
    return to_limit(r, unit, sep=sep)


def m_fluent_then_loop(r):
    s, parts = fact_sentence(r)
    s = s.rstrip(".")
    words = s.split()
    cut = r.randint(3, len(words))
    start = " ".join(words[:cut])
    unit = r.choice(
        [words[cut - 1], " ".join(words[max(0, cut - 2) : cut]), parts[-1], "the", "of the"]
    )
    return to_limit(r, unit, prefix=start + " ")


def m_char_run_letter(r):
    ch = r.choice("aeiousnrxkqöë")
    n = r.randint(14, 90)
    k = r.randrange(3)
    if k == 0:
        return ch * n
    if k == 1:
        return ch.upper() + ch * n
    n_, _ = person(r)
    return f"{n_} was {ch * n}"


def m_char_run_digit(r):
    k = r.randrange(3)
    if k == 0:
        return str(r.randint(1, 2)) + r.choice("0123456789") * r.randint(15, 70)
    if k == 1:
        return r.choice("0123456789") * r.randint(15, 80)
    n_, _ = person(r)
    return f"{n_} was born in 19{r.choice('0123456789') * r.randint(15, 60)}"


def m_char_run_punct(r):
    ch = r.choice(list(".,!?-_*'\"/:;)#"))
    n = r.randint(15, 100)
    k = r.randrange(3)
    if k == 0:
        return ch * n
    if k == 1:
        return place(r)[0] + ch * n
    return (ch + " ") * (n // 2)


def m_char_run_inword(r):
    """A letter stretched inside an invented name or ordinary word."""
    _, parts = fact_sentence(r)
    w = (
        "".join(parts[:2])
        if r.random() < 0.6
        else r.choice(["cello", "born", "teacher", "award", "city"])
    )
    i = r.randrange(1, len(w))
    ch = w[i - 1]
    while not ch.isalpha():
        i = r.randrange(1, len(w))
        ch = w[i - 1]
    stretched = w[:i] + ch * r.randint(15, 60) + w[i:]
    return stretched if r.random() < 0.5 else f"{stretched} {stretched}"


def m_fragment(r):
    _, parts = fact_sentence(r)
    piece = r.choice(parts).lower()
    cands = [
        "",
        " ",
        ".",
        ",",
        "-",
        "'",
        "?",
        ":",
        ")",
        "\n",
        r.choice("bcdfgkqxz"),
        r.choice("bcdfgkqxz") + ".",
        piece[1:3] if len(piece) > 3 else "",
        "'s",
        "th",
        "ing",
        "ed.",
        "nd",
        piece[-2:],
        "(",
        '"',
        "-th",
        "., ",
    ]
    return r.choice(cands)


def m_subword_soup(r):
    """Byte-pair pieces of the invented names recombined at random."""
    pieces = []
    for _ in range(3):
        _, p = fact_sentence(r)
        pieces += p
    pieces += ["##", "ing", "ed", "th", "ern", "ville", "ando", "sson"]
    out = []
    for _ in range(r.randint(6, 16)):
        pc = r.choice(pieces)
        if r.random() < 0.3:
            pc = pc.lower()
        elif r.random() < 0.2:
            pc = pc.upper()
        out.append(pc)
    s = ""
    for pc in out:
        s += pc if r.random() < 0.55 else " " + pc
    return s.strip()


SALAD_WORDS = [
    "born",
    "the",
    "of",
    "cello",
    "teacher",
    "was",
    "city",
    "award",
    "in",
    "mother",
    "glass",
    "orchard",
    "wrote",
    "father",
    "year",
    "prize",
    "under",
    "played",
    "to",
    "river",
    "studied",
    "and",
    "her",
    "his",
    "music",
    "book",
    "lantern",
    "a",
    "with",
]


def m_word_salad(r):
    """Real words in random order without syntax; adjacent function-word clashes kept."""
    n = r.randint(8, 15)
    words = [r.choice(SALAD_WORDS) for _ in range(n)]
    # force several non-syntactic adjacencies
    for _ in range(3):
        i = r.randrange(n - 1)
        words[i], words[i + 1] = (
            r.choice(["the", "of", "a", "to"]),
            r.choice(["was", "and", "of", "the"]),
        )
    if r.random() < 0.4:
        words.insert(r.randrange(n), place(r)[0].lower())
    return " ".join(words)


def m_glued_broken(r):
    """Words glued without spaces, with letters dropped or pieces repeated."""
    s, _ = fact_sentence(r)
    ws = s.rstrip(".").split()
    out = []
    for w in ws:
        if len(w) > 3 and r.random() < 0.4:
            cut = r.randrange(1, len(w) - 1)
            w = w[:cut] + w[cut + 1 :] if r.random() < 0.5 else w[:cut]
        out.append(w)
    # glue most boundaries
    g = out[0]
    for w in out[1:]:
        g += w if r.random() < 0.8 else " " + w
    if r.random() < 0.5:
        g = g + g[: r.randint(4, 12)]
    return g


MALFORMED = {
    "word_loop": m_word_loop,
    "phrase_loop": m_phrase_loop,
    "fluent_then_loop": m_fluent_then_loop,
    "char_run_letter": m_char_run_letter,
    "char_run_digit": m_char_run_digit,
    "char_run_punct": m_char_run_punct,
    "char_run_inword": m_char_run_inword,
    "fragment": m_fragment,
    "subword_soup": m_subword_soup,
    "word_salad": m_word_salad,
    "glued_broken": m_glued_broken,
}


def ok_fluent(kind, t):
    """Reject fluent rows whose invented names happen to contain a letter
    tripled (e.g. 'ill'+'lla'), which would blur the character-run boundary."""
    for i in range(len(t) - 2):
        if t[i].isalpha() and t[i].lower() == t[i + 1].lower() == t[i + 2].lower():
            return False
    return True


def ok_malformed(kind, t):
    """Reject generated malformed rows that would be ambiguous."""
    if kind == "glued_broken":
        # must actually be glued: at least one long spaceless token
        return max((len(w) for w in t.split()), default=0) >= 14
    if kind == "fragment":
        return len(t) <= 4
    if kind == "subword_soup":
        return len(t) >= 15 and " " in t.strip() or len(t) >= 25
    if kind in ("word_loop", "phrase_loop", "fluent_then_loop"):
        return len(t) >= 100
    return True


def build():
    rows, seen = [], set()
    # fluent: spread ~200 rows over 11 families
    n_f = {k: 18 for k in FLUENT}
    n_m = {k: 18 for k in MALFORMED}
    for fams, counts, lab in ((FLUENT, n_f, False), (MALFORMED, n_m, True)):
        for kind, fn in fams.items():
            got, tries = 0, 0
            # fragments have a small space of values; allow duplicates less strictly
            while got < counts[kind] and tries < 5000:
                tries += 1
                t = fn(rng)
                if lab and not ok_malformed(kind, t):
                    continue
                if not lab and not ok_fluent(kind, t):
                    continue
                if t in seen:
                    continue
                seen.add(t)
                rows.append({"text": t, "malformed": lab, "kind": kind})
                got += 1
    rng.shuffle(rows)
    with open(OUT, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    c = Counter((r["malformed"], r["kind"]) for r in rows)
    for (lab, kind), v in sorted(c.items()):
        print(f"{str(lab):5} {kind:24} {v}")
    print("total", len(rows), "malformed", sum(r["malformed"] for r in rows))


if __name__ == "__main__":
    build()
