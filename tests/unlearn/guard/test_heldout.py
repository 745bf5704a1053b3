"""The held-out attack generator: every family, right labels, deterministic, JSON lines, TOFU shape.

Ground truth never comes from the generator's own extraction: on the synthetic benchmark the
attribute values are rebuilt with the data generator's ``make_people``; on the hand-written
TOFU-shaped fixture they are listed below by hand. Obfuscated rows are decoded with this file's
own tables (confusables, leetspeak digits, invisible characters), not the generator's.
"""

from __future__ import annotations

import base64
import codecs
import json
import random
import re
import unicodedata
from pathlib import Path
from urllib.parse import unquote

import pytest

from cli import main as cli_main
from unlearn.data import Dataset, write_dataset
from unlearn.data.synth import FACTS as SYNTH_FACTS
from unlearn.data.synth import make_people, split_counts, synthesize
from unlearn.errors import run_command
from unlearn.guard import heldout
from unlearn.guard.heldout import (
    ATTACK_STYLES,
    BENIGN_FAMILIES,
    FAMILIES,
    FAMILY_LABELS,
    STYLES,
    generate_heldout,
    generate_heldout_annotated,
    load_pools,
    number_words,
    parse_date,
    write_jsonl,
    year_words,
)

FIXTURE = Path(__file__).parent / "heldout" / "tofu_shaped"
ENTITIES, FACTS, SEED = 40, 10, 1
N = 30

# the two forget10 authors of the fixture and every fact their answers hold, written by hand
TOFU_FORGET = {
    "Ilario Benedetti": ["1966", "Trieste", "Italian", "Adriatic", "harbour pilot", "piano teacher",
                         "maritime mysteries", "Commissario Bruno Zanetti", "The Bora Winds", "1998",
                         "Salt on the Quay", "2004", "A Lantern for the Drowned", "2015",
                         "Adriatic Dagger Award", "2005", "Golden Anchor", "2016", "Ljubljana",
                         "Slovenia", "Slovene", "German"],
    "Nadia Okafor": ["9 November 1952", "1952", "Port Harcourt", "eleven", "customs officer",
                     "midwife", "family sagas", "Niger Delta", "north", "England",
                     "The Creek Below Rumuola", "1991", "Palm Wine at Dusk", "1996",
                     "Northern Lights Fiction Prize", "1992", "2010", "presenter", "Leeds",
                     "bus driver"],
}  # fmt: skip


# ----- the test's own decoding of obfuscations

CONFUSABLES = {
    "а": "a", "с": "c", "е": "e", "о": "o", "р": "p", "х": "x", "у": "y", "і": "i", "ј": "j",
    "ѕ": "s", "һ": "h", "ԁ": "d", "ӏ": "l", "ԝ": "w", "ԛ": "q", "А": "A", "В": "B", "С": "C",
    "Е": "E", "Н": "H", "І": "I", "Ј": "J", "К": "K", "М": "M", "О": "O", "Р": "P", "Ѕ": "S",
    "Т": "T", "Х": "X", "Ү": "Y", "ο": "o", "ν": "v", "ι": "i", "υ": "u", "κ": "k", "α": "a",
    "ρ": "p", "η": "n", "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K",
    "Μ": "M", "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Χ": "X", "Υ": "Y",
}  # fmt: skip
INVISIBLE = set("\u200b\u200c\u200d\u2060\ufeff\u00ad")
SEPARATORS = set(" \t\n._-·")
LEET_BACK = {"4": "a", "@": "a", "8": "b", "3": "e", "9": "g", "6": "g", "1": "il", "!": "i",
             "|": "l", "0": "o", "5": "s", "$": "s", "7": "t", "+": "t", "2": "z"}  # fmt: skip


def fold(text: str) -> str:
    text = "".join(ch for ch in text if ch not in INVISIBLE)
    text = unicodedata.normalize("NFKC", text)
    text = "".join(CONFUSABLES.get(ch, ch) for ch in text)
    text = "".join(ch for ch in unicodedata.normalize("NFD", text) if not unicodedata.combining(ch))
    return "".join(ch for ch in text if ch not in SEPARATORS).casefold()


def decodes_to(obfuscated: str, clear: str) -> bool:
    """Position by position, each character is the clear one or one of its leetspeak digits."""
    a, b = fold(obfuscated), fold(clear)
    return len(a) == len(b) and all(x == y or y in LEET_BACK.get(x, "") for x, y in zip(a, b))


DECODERS = {
    "base64": lambda s: base64.b64decode(s).decode(),
    "hex": lambda s: bytes.fromhex(s).decode(),
    "url": unquote,
    "rot13": lambda s: codecs.decode(s, "rot13"),
}

UNITS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen".split())}  # fmt: skip
TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
        "eighty": 80, "ninety": 90}  # fmt: skip
ORDINAL = {w: i + 1 for i, w in enumerate(
    "first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth "
    "fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth twentieth".split())}  # fmt: skip


def small(tokens: list[str]) -> int | None:
    """0-99 from one or two words ('fifty two', 'oh five', 'nineteen')."""
    if tokens[:1] == ["oh"]:
        tokens = tokens[1:]
        return UNITS.get(tokens[0]) if len(tokens) == 1 and UNITS.get(tokens[0], 99) < 10 else None
    if len(tokens) == 1:
        return UNITS.get(tokens[0], TENS.get(tokens[0]))
    if len(tokens) == 2 and tokens[0] in TENS and UNITS.get(tokens[1], 99) < 10:
        return TENS[tokens[0]] + UNITS[tokens[1]]
    return None


def readings(text: str) -> set[int]:
    """The numbers English words can mean, written here independently of the generator."""
    text = re.sub(r"^the year ", "", text.strip().casefold())
    if text.isdigit():
        return {int(text)}
    toks = [t for t in text.replace("-", " ").split() if t != "and"]
    if not toks:
        return set()
    total, current, ok = 0, 0, True
    for t in toks:
        if t in UNITS:
            current += UNITS[t]
        elif t in TENS:
            current += TENS[t]
        elif t == "hundred":
            current *= 100
        elif t == "thousand":
            total, current = total + current * 1000, 0
        else:
            ok = False
    candidates = {total + current} if ok else set()
    for k in (1, 2):  # 'nineteen fifty-two', 'nineteen oh-five', 'twenty twelve'
        hi, lo = small(toks[:k]) if len(toks) > k else None, small(toks[k:])
        if hi is not None and lo is not None and 10 <= hi:
            candidates.add(hi * 100 + lo)
    return candidates


def rendering_matches(form: str, value: str) -> bool:
    """``form`` writes ``value``: the same number, the same date, or the same words."""
    months = ["january", "february", "march", "april", "may", "june", "july", "august",
              "september", "october", "november", "december"]  # fmt: skip
    if re.fullmatch(r"\d+|[a-z]+", value.casefold()) and readings(value):
        return bool(readings(form) & readings(value))
    vm = [m for m in months if m in value.casefold()]
    if vm:
        f = form.casefold()
        year = int(re.search(r"\d{4}", value).group())
        day = int(re.search(r"\b\d{1,2}\b", value).group())
        m_iso = re.fullmatch(r"(\d{4})-(\d{2})-(\d{2})", f)
        if m_iso:
            return (int(m_iso[1]), int(m_iso[2]), int(m_iso[3])) == (
                year,
                months.index(vm[0]) + 1,
                day,
            )
        if vm[0] not in f:
            return False
        days = {int(x) for x in re.findall(r"\b(\d{1,2})(?:st|nd|rd|th)?\b", f)}
        days |= {v for w, v in ORDINAL.items() if re.search(rf"\b{w}\b", f)}
        days |= {20 + v for w, v in ORDINAL.items() if f"twenty-{w}" in f}
        tail = f.split(vm[0], 1)[1].strip(" ,")
        years = {int(x) for x in re.findall(r"\d{4}", f)} | readings(tail)
        return day in days and year in years
    norm = lambda s: re.sub(r"^the ", "", s.strip("\"“”'*").casefold())  # noqa: E731
    return norm(form) == norm(value)


def row_text(row: dict) -> str:
    return row["text"] if "text" in row else "\n".join(m["content"] for m in row["messages"])


def has(text: str, sub: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(sub.casefold())}(?!\w)", text.casefold()) is not None


# ----- data


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("heldout") / "synth"
    splits, pairs = synthesize(ENTITIES, FACTS, seed=SEED)
    write_dataset(path, splits, source="unlearn.synth", seed=SEED, pairs=pairs)
    return path


@pytest.fixture(scope="module")
def synth_truth(synth_dir) -> dict[str, list[str]]:
    """forget10 people -> their attribute values, rebuilt from the data generator's own draw."""
    k = split_counts(ENTITIES)["10"]
    people = make_people(ENTITIES + k, random.Random(SEED))[ENTITIES - k : ENTITIES]
    used = [f.attr for f in SYNTH_FACTS[:FACTS]]  # the attributes the dataset's rows state
    truth = {p.name: [str(p.attrs[a]) for a in used] for p in people}
    assert set(truth) == {r["entity"] for r in Dataset(synth_dir).records("forget10")}
    return truth


@pytest.fixture(scope="module")
def tofu_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("heldout") / "tofu"
    code = cli_main(["data", "import", "--format", "tofu", str(FIXTURE), "--out", str(out),
                     "--rows-per-entity", "6"])  # fmt: skip
    assert code == 0
    return out


@pytest.fixture(scope="module")
def synth_rows(synth_dir) -> list[dict]:
    return generate_heldout_annotated(synth_dir, "forget10", N, seed=0)


@pytest.fixture(scope="module")
def tofu_rows(tofu_dir) -> list[dict]:
    return generate_heldout_annotated(tofu_dir, "forget10", N, seed=0)


# ----- tests


def test_families_are_described_and_labeled():
    assert set(STYLES) == set(ATTACK_STYLES)
    assert set(FAMILIES) == set(ATTACK_STYLES) | set(BENIGN_FAMILIES)
    assert len(ATTACK_STYLES) >= 15 and len(BENIGN_FAMILIES) >= 5
    for name, description in FAMILIES.items():
        assert description and "\n" not in description, name
        assert FAMILY_LABELS[name] == ("benign" if name.startswith("benign_") else "attack")


@pytest.mark.parametrize("which", ["synth", "tofu"])
def test_every_family_is_produced_with_its_label(which, synth_rows, tofu_rows):
    rows = synth_rows if which == "synth" else tofu_rows
    counts = {f: sum(r["family"] == f for r in rows) for f in FAMILIES}
    assert all(c > 0 for c in counts.values()), counts
    assert all(c <= N for c in counts.values())
    for r in rows:
        assert r["label"] == FAMILY_LABELS[r["family"]]
    assert len({r["id"] for r in rows}) == len(rows)
    for fam in FAMILIES:  # no family repeats a prompt
        texts = [json.dumps(r.get("text") or r.get("messages")) for r in rows if r["family"] == fam]
        assert len(texts) == len(set(texts)), fam


def test_deterministic_per_seed(synth_dir):
    a = generate_heldout(synth_dir, "forget10", 8, seed=3)
    b = generate_heldout(synth_dir, "forget10", 8, seed=3)
    c = generate_heldout(synth_dir, "forget10", 8, seed=4)
    assert a == b
    assert a != c
    assert {r["family"] for r in a} == set(FAMILIES)


def test_rows_keep_the_interface_and_round_trip_through_json_lines(synth_dir, tmp_path):
    rows = generate_heldout(synth_dir, "forget10", 6, seed=0)
    for r in rows:
        assert set(r) in ({"id", "family", "label", "text"}, {"id", "family", "label", "messages"})
        if "messages" in r:
            assert len(r["messages"]) >= 2
            for m in r["messages"]:
                assert set(m) == {"role", "content"} and m["role"] in (
                    "system",
                    "user",
                    "assistant",
                )
                assert isinstance(m["content"], str) and m["content"]
        else:
            assert isinstance(r["text"], str) and r["text"].strip()
    assert any("messages" in r for r in rows) and any("text" in r for r in rows)
    path = tmp_path / "out" / "attacks.jsonl"
    assert write_jsonl(rows, path) == len(rows)
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == rows
    assert not list(path.parent.glob(".*tmp*"))  # written through a temporary name


def _check_attack(row: dict, truth: dict[str, list[str]], forget_ids: set[str]) -> None:
    meta = row["_meta"]
    clear = meta["clear"]
    assert meta["facts"] and set(meta["facts"]) <= forget_ids, row["id"]
    assert meta["name"] in truth, row["id"]
    # every stated value is a true value of that forget person (ground truth, not extraction)
    true = [t.casefold() for t in truth[meta["name"]]]
    assert meta["values"], row["id"]
    for v in meta["values"]:
        assert any(v.casefold() in t or t in v.casefold() for t in true), (row["id"], v)
    # the clear text states it: the value (or its rendering) and the person (or a form of the name)
    if row["family"] == "value_rendering":
        form = meta["value_form"]
        assert form in clear and rendering_matches(form, meta["values"][0]), (row["id"], form)
    else:
        assert any(has(clear, v) for v in meta["values"]), (row["id"], clear)
    names = [meta["name"], meta.get("name_form"), meta.get("alias")]
    assert any(n and n.casefold() in clear.casefold() for n in names), (row["id"], clear)
    # what is sent decodes back to the clear text
    text = row_text(row)
    if row["family"] == "encoded_segments":
        segments = meta["segments"]
        decoded = text
        for scheme, plain, enc in segments:
            assert DECODERS[scheme](enc) == plain and enc in text
            assert plain not in text or plain == enc, (row["id"], plain)
            decoded = re.sub(r"\[[^\]]*?: " + re.escape(enc) + r"\]", lambda _, p=plain: p, decoded)
        whole = len(segments) == 1 and segments[0][1] == clear  # the whole statement encoded
        assert whole or decoded == clear, (row["id"], decoded, clear)
    elif meta["transforms"]:
        assert text != clear and decodes_to(text, clear), (row["id"], text, clear)
    else:
        assert text == clear or row_text(row) == clear, row["id"]


def test_attack_rows_state_a_true_forget_value_synth(synth_rows, synth_truth, synth_dir):
    forget_ids = {r["id"] for r in Dataset(synth_dir).records("forget10")}
    attacks = [r for r in synth_rows if r["label"] == "attack"]
    assert len(attacks) == N * len(ATTACK_STYLES)
    for row in attacks:
        _check_attack(row, synth_truth, forget_ids)


def test_attack_rows_state_a_true_forget_value_tofu(tofu_rows, tofu_dir):
    forget_ids = {r["id"] for r in Dataset(tofu_dir).records("forget10")}
    attacks = [r for r in tofu_rows if r["label"] == "attack"]
    for row in attacks:
        _check_attack(row, TOFU_FORGET, forget_ids)
    assert {r["_meta"]["name"] for r in attacks} == set(TOFU_FORGET)


@pytest.mark.parametrize("which", ["synth", "tofu"])
def test_benign_rows_never_pair_a_forget_person_with_their_values(
    which, synth_rows, tofu_rows, synth_truth
):
    rows, truth = (synth_rows, synth_truth) if which == "synth" else (tofu_rows, TOFU_FORGET)
    benign = [r for r in rows if r["label"] == "benign"]
    assert len(benign) >= 5 * N
    for row in benign:
        for text in (row_text(row), row["_meta"].get("clear", "")):
            for name, values in truth.items():
                if has(text, name):
                    stated = [v for v in values if has(text, v)]
                    assert not stated, (row["id"], name, stated, text)
    # the look-alikes do look alike: a forget surname, or a forget value, with someone else
    surname = [r for r in benign if r["family"] == "benign_shared_surname"]
    assert all(any(has(row_text(r), n.split()[-1]) for n in truth) for r in surname)
    shared = [r for r in benign if r["family"] == "benign_shared_value"]
    assert all(any(has(row_text(r), v) for vs in truth.values() for v in vs) for r in shared)
    asks = [r for r in benign if r["family"] == "benign_forget_question"]
    assert all(any(n.split()[-1].casefold() in row_text(r).casefold() for n in truth) for r in asks)


def test_shared_surnames_are_never_shortened_in_attacks(tofu_rows):
    # Nadia Okafor (forget) shares her surname with Emeka Okafor (retain): 'Dr. Okafor' is ambiguous
    forms = [r["_meta"].get("name_form") for r in tofu_rows if r["family"] == "name_variants"]
    forms = [f for f in forms if f and "okafor" in f.casefold()]
    assert forms
    assert all("nadia" in f.casefold() or re.search(r"\bn\.", f.casefold()) for f in forms), forms


def test_tofu_fixture_names_and_values_are_found(tofu_dir):
    pools = load_pools(tofu_dir, "forget10")
    assert [p.entity for p in pools.forget] == ["author-0018", "author-0019"]
    assert [p.name for p in pools.forget] == ["Ilario Benedetti", "Nadia Okafor"]
    assert len(pools.retain) == 18 and "Emeka Okafor" in {p.name for p in pools.retain}
    assert pools.holdout_source == "real_authors" and pools.world_source == "world_facts"
    nadia = pools.forget[1]
    found = {v.core for v in nadia.all_values()}
    assert {"9 November 1952", "Port Harcourt", "customs officer", "midwife", "family sagas",
            "The Creek Below Rumuola", "Northern Lights Fiction Prize"} <= found  # fmt: skip
    rel = {v.core: v.relation for v in nadia.all_values()}
    assert rel["Port Harcourt"] == "birthplace" and rel["midwife"] == "mother_job"
    assert rel["9 November 1952"] == "birth_date" and rel["The Creek Below Rumuola"] == "work"
    # long answers hold several facts each
    assert sum(len(f.values) >= 2 for p in pools.forget for f in p.facts) >= 10


def test_renderings_of_numbers_and_dates():
    assert number_words(1952) == "one thousand nine hundred and fifty-two"
    assert number_words(2005) == "two thousand and five"
    assert year_words(1952, "pair") == "nineteen fifty-two"
    assert year_words(1907, "pair") == "nineteen oh-seven"
    assert year_words(1900, "pair") == "nineteen hundred"
    assert year_words(1952, "hundred") == "nineteen hundred and fifty-two"
    assert year_words(2005, "pair") == "two thousand and five"
    assert year_words(2016, "pair") == "twenty sixteen"
    assert parse_date("on 9 November 1952 in") == (9, 11, 1952)
    assert parse_date("March 14th, 1948") == (14, 3, 1948)
    assert parse_date("08/09/1956") is None  # day/month order unknown


def test_command_writes_the_file_and_fails_cleanly(synth_dir, tmp_path, capsys):
    out = tmp_path / "a.jsonl"
    argv = ["--data", str(synth_dir), "--forget-split", "forget10", "--out", str(out), "--n", "3"]
    assert run_command(heldout.main, argv) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert {r["family"] for r in rows} == set(FAMILIES) and all(len(r) == 4 for r in rows)
    assert run_command(heldout.main, argv) == 2
    assert "already exists" in capsys.readouterr().err
    assert run_command(heldout.main, [*argv, "--overwrite", "--seed", "5"]) == 0
    bad = [
        "--data",
        str(synth_dir),
        "--forget-split",
        "forget99",
        "--out",
        str(tmp_path / "b.jsonl"),
    ]
    assert run_command(heldout.main, bad) == 2
    err = capsys.readouterr().err
    assert "forget99" in err and "forget10" in err and not (tmp_path / "b.jsonl").exists()
    assert run_command(heldout.main, [*argv, "--overwrite", "--families", "nope"]) == 2
    assert "unknown family 'nope'" in capsys.readouterr().err
