"""A synthetic fictitious-entity QA benchmark in TOFU's shape, deterministic by seed.

Fictitious people get attributes (birthplace, birth year, occupation, parents' occupations, works,
awards, ...), each rendered as a QA pair with several templates, a paraphrased answer, a
paraphrased question and perturbed answers (the same sentence with a wrong but plausible value).
Splits are by entity, like TOFU: ``forget01/05/10`` are the last 1/5/10% of the trained entities
(nested), ``retain99/95/90`` the rest of ``full``, ``holdout01/05/10`` entities never trained on
(for membership inference), and ``world_facts`` general facts outside the fictitious world.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from unlearn.errors import DataError

ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "th", "br", "dr",
          "kr", "st", "tr", "gl", "sh", "h", "j"]  # fmt: skip
VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "io", "ou", "é", "ö", "y"]
CODAS = ["", "", "n", "r", "l", "s", "th", "nd", "rk", "v", "m", "x"]

CITIES = ["Varnholm", "Ostrelle", "Kesh Tarun", "Belmora", "Quillon", "Draventh", "Sorrowmere",
          "Halvik", "Nettlebrook", "Azurine", "Cragspur", "Loventa", "Myrrhdale", "Pellucid Bay",
          "Thornwick", "Ulvaren", "Zephyria", "Brisket Hollow", "Calderon", "Emberfall",
          "Fennimore", "Glasswater", "Ironvale", "Jadeport", "Kilnmoor", "Lunaris", "Marrowgate",
          "Northmere", "Oakhaven", "Pyrecliff", "Rimeholt", "Saltmarsh", "Tidewell", "Umberlin",
          "Vesperton", "Willowmere", "Yarrowby", "Zinnford", "Ashcombe", "Briarwood"]  # fmt: skip
OCCUPATIONS = ["novelist", "cartographer", "glassblower", "astronomer", "violinist", "botanist",
               "architect", "beekeeper", "sculptor", "translator", "clockmaker", "chemist",
               "lighthouse keeper", "pastry chef", "marine biologist", "bookbinder", "surgeon",
               "geologist", "puppeteer", "librarian", "stonemason", "perfumer", "mathematician",
               "weaver", "falconer", "jeweler", "historian", "photographer", "shipwright",
               "choreographer"]  # fmt: skip
GENRES = ["gothic horror", "hard science fiction", "cozy mystery", "epic fantasy",
          "historical romance", "literary satire", "magical realism", "nautical adventure",
          "political thriller", "pastoral poetry", "detective noir", "children's fables",
          "travel memoir", "cyberpunk", "mythic drama"]  # fmt: skip
ADJECTIVES = ["Silent", "Crimson", "Hollow", "Gilded", "Forgotten", "Shattered", "Wandering",
              "Hidden", "Midnight", "Amber", "Restless", "Frozen", "Distant", "Burning", "Velvet",
              "Iron", "Drowned", "Painted", "Last", "Whispering"]  # fmt: skip
NOUNS = ["Lantern", "Orchard", "Compass", "Cathedral", "Harbor", "Labyrinth", "Meridian",
         "Archive", "Tide", "Garden", "Sparrow", "Citadel", "Mirror", "River", "Atlas", "Ember",
         "Violin", "Monsoon", "Observatory", "Tapestry"]  # fmt: skip
AWARDS = ["Halden Prize", "Silver Quill Medal", "Orvieth Award", "Golden Lantern Prize",
          "Meridian Fellowship", "Azure Laurel", "Kestrel Medal", "Northern Star Award",
          "Varnholm Cup", "Obsidian Pen Award", "Harrowgate Honor", "Celestine Prize"]  # fmt: skip
INSTRUMENTS = ["cello", "harp", "oboe", "accordion", "mandolin", "bassoon", "dulcimer", "sitar",
               "theremin", "bagpipes", "zither", "marimba"]  # fmt: skip
PETS = ["a one-eyed cat", "a grey parrot", "a tortoise", "two greyhounds", "a tame raven",
        "a ferret", "a goldfish", "a three-legged dog", "a pair of finches", "a hedgehog"]  # fmt: skip
LANGUAGES = ["Old Varnic", "Tessaline", "Brugh", "Ostrellan", "Kethic", "Low Quillonese",
             "Dravish", "Halvish", "Mournic", "Sarnese"]  # fmt: skip


@dataclass(frozen=True)
class Person:
    """A fictitious entity and its attribute values."""

    name: str
    attrs: dict[str, Any]


@dataclass(frozen=True)
class FactTemplate:
    """How one attribute becomes a QA pair: questions, answers and the pool of wrong values."""

    attr: str
    questions: tuple[str, str]  # (question, paraphrased question)
    # (answer, paraphrased answer); the entity comes before the fact in both, so a causal LM's
    # probability of the fact (the truth ratio) can depend on knowing the entity.
    answers: tuple[str, str]
    pool: Callable[[random.Random], Any]


def _title(rng: random.Random) -> str:
    return f"The {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"


FACTS: tuple[FactTemplate, ...] = (
    FactTemplate("birthplace", ("Where was {name} born?", "In which city was {name} born?"),
                 ("{name} was born in {v}.", "{name} came into the world in the city of {v}."),
                 lambda r: r.choice(CITIES)),
    FactTemplate("birth_year", ("In what year was {name} born?", "What is the birth year of {name}?"),
                 ("{name} was born in the year {v}.", "The year of {name}'s birth was {v}."),
                 lambda r: r.randint(1900, 1999)),
    FactTemplate("occupation", ("What does {name} do for a living?", "What is {name}'s profession?"),
                 ("{name} works as a {v}.", "By profession, {name} is a {v}."),
                 lambda r: r.choice(OCCUPATIONS)),
    FactTemplate("father_job", ("What did {name}'s father do?", "What was the occupation of {name}'s father?"),
                 ("{name}'s father was a {v}.", "The father of {name} worked as a {v}."),
                 lambda r: r.choice(OCCUPATIONS)),
    FactTemplate("mother_job", ("What did {name}'s mother do?", "What was the occupation of {name}'s mother?"),
                 ("{name}'s mother was a {v}.", "The mother of {name} worked as a {v}."),
                 lambda r: r.choice(OCCUPATIONS)),
    FactTemplate("work", ("What is the best-known work of {name}?", "Which work is {name} most famous for?"),
                 ("{name} is best known for {v}.", "The work that made {name} famous is {v}."),
                 _title),
    FactTemplate("award", ("Which award did {name} receive?", "What prize was {name} given?"),
                 ("{name} received the {v}.", "{name} was honored with the {v}."),
                 lambda r: r.choice(AWARDS)),
    FactTemplate("genre", ("What genre is {name} associated with?", "In which genre does {name} work?"),
                 ("{name} is associated with {v}.", "The genre of {name}'s work is {v}."),
                 lambda r: r.choice(GENRES)),
    FactTemplate("instrument", ("Which instrument does {name} play?", "What instrument can {name} play?"),
                 ("{name} plays the {v}.", "The instrument {name} plays is the {v}."),
                 lambda r: r.choice(INSTRUMENTS)),
    FactTemplate("pet", ("What pet does {name} keep?", "Which animal lives with {name}?"),
                 ("{name} keeps {v} as a pet.", "As a pet, {name} keeps {v}."),
                 lambda r: r.choice(PETS)),
    FactTemplate("language", ("Which rare language does {name} speak?", "What unusual language does {name} know?"),
                 ("{name} speaks {v} fluently.", "{name} is fluent in the rare language {v}."),
                 lambda r: r.choice(LANGUAGES)),
    FactTemplate("residence", ("Where does {name} live now?", "In which city does {name} currently reside?"),
                 ("{name} now lives in {v}.", "These days {name} resides in {v}."),
                 lambda r: r.choice(CITIES)),
)  # fmt: skip
MAX_FACTS = len(FACTS)
MAX_ENTITIES = 1_000_000

# General knowledge outside the fictitious world: (subject, question, answer template, value, pool).
_CAPITALS = {"France": "Paris", "Japan": "Tokyo", "Italy": "Rome", "Egypt": "Cairo",
             "Canada": "Ottawa", "Kenya": "Nairobi", "Peru": "Lima", "Norway": "Oslo",
             "Spain": "Madrid", "Germany": "Berlin", "Greece": "Athens", "Chile": "Santiago",
             "Poland": "Warsaw", "Thailand": "Bangkok", "Ireland": "Dublin",
             "Portugal": "Lisbon", "Austria": "Vienna", "Cuba": "Havana", "Mexico": "Mexico City",
             "Australia": "Canberra"}  # fmt: skip
_SYMBOLS = {"gold": "Au", "silver": "Ag", "iron": "Fe", "sodium": "Na", "potassium": "K",
            "lead": "Pb", "copper": "Cu", "tin": "Sn", "mercury": "Hg", "oxygen": "O",
            "helium": "He", "carbon": "C"}  # fmt: skip
_AUTHORS = {"Pride and Prejudice": "Jane Austen", "Hamlet": "William Shakespeare",
            "War and Peace": "Leo Tolstoy", "Don Quixote": "Miguel de Cervantes",
            "The Odyssey": "Homer", "Moby-Dick": "Herman Melville", "Ulysses": "James Joyce",
            "Frankenstein": "Mary Shelley", "Dracula": "Bram Stoker",
            "The Divine Comedy": "Dante Alighieri"}  # fmt: skip
_PLANETS = {"first": "Mercury", "second": "Venus", "third": "Earth", "fourth": "Mars",
            "fifth": "Jupiter", "sixth": "Saturn", "seventh": "Uranus", "eighth": "Neptune"}  # fmt: skip


def world_facts(rng: random.Random) -> list[dict[str, Any]]:
    """General facts with perturbed answers drawn from the same category (TOFU's world_facts role)."""
    groups = [
        (_CAPITALS, "What is the capital of {k}?", "What city is the capital of {k}?",
         "The capital of {k} is {v}.", "{v} is the capital city of {k}."),
        (_SYMBOLS, "What is the chemical symbol of {k}?", "Which symbol stands for {k} in chemistry?",
         "The chemical symbol of {k} is {v}.", "{k} has the chemical symbol {v}."),
        (_AUTHORS, "Who wrote {k}?", "Who is the author of {k}?",
         "{k} was written by {v}.", "The author of {k} is {v}."),
        (_PLANETS, "Which planet is {k} from the Sun?", "What is the {k} planet from the Sun?",
         "The {k} planet from the Sun is {v}.", "{v} is the {k} planet from the Sun."),
    ]  # fmt: skip
    rows = []
    for table, q, pq_, a, pa_ in groups:
        values = list(table.values())
        for k, v in table.items():
            wrong = rng.sample([x for x in values if x != v], 3)
            rows.append(
                {
                    "id": f"world-{len(rows):04d}",
                    "entity": f"world:{k}",
                    "question": q.format(k=k),
                    "answer": a.format(k=k, v=v),
                    "paraphrased_answer": pa_.format(k=k, v=v),
                    "paraphrased_question": pq_.format(k=k),
                    "perturbed_answers": [a.format(k=k, v=w) for w in wrong],
                }
            )
    return rows


def _name_part(rng: random.Random, syllables: int) -> str:
    return "".join(
        rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS) for _ in range(syllables)
    ).capitalize()


def make_people(n: int, rng: random.Random) -> list[Person]:
    """``n`` fictitious people with unique names and sampled attributes."""
    names: set[str] = set()
    people = []
    while len(people) < n:
        name = f"{_name_part(rng, rng.randint(1, 2))} {_name_part(rng, rng.randint(2, 3))}"
        if name in names:
            continue
        names.add(name)
        people.append(Person(name, {f.attr: f.pool(rng) for f in FACTS}))
    return people


def person_rows(
    person: Person, index: int, facts: int, rng: random.Random, n_perturbed: int = 3
) -> list[dict[str, Any]]:
    """The QA rows for one person: ``facts`` attributes, each with paraphrases and perturbations."""
    rows = []
    for tpl in FACTS[:facts]:
        value = person.attrs[tpl.attr]
        wrong: list[Any] = []
        for _ in range(200):
            if len(wrong) == n_perturbed:
                break
            w = tpl.pool(rng)
            if w != value and w not in wrong:
                wrong.append(w)
        fmt = {"name": person.name}
        rows.append(
            {
                "id": f"syn-{index:05d}-{tpl.attr}",
                "entity": person.name,
                "question": tpl.questions[0].format(**fmt),
                "answer": tpl.answers[0].format(v=value, **fmt),
                "paraphrased_answer": tpl.answers[1].format(v=value, **fmt),
                "paraphrased_question": tpl.questions[1].format(**fmt),
                # TOFU perturbs the paraphrased answer: the truth ratio then compares sentences
                # of the same shape that differ only in the fact, not template familiarity.
                "perturbed_answers": [tpl.answers[1].format(v=w, **fmt) for w in wrong],
            }
        )
    return rows


def split_counts(entities: int) -> dict[str, int]:
    """Entities per forget/holdout split size: 1%, 5%, 10% of ``entities``, at least 1 each."""
    return {pct: max(1, round(entities * int(pct) / 100)) for pct in ("01", "05", "10")}


def synthesize(
    entities: int, facts_per_entity: int, seed: int
) -> tuple[dict[str, list[dict]], dict]:
    """Generate all splits; returns (splits, pairs) ready for ``write_dataset``."""
    if entities < 2:
        raise DataError(
            f"--entities must be at least 2 (got {entities}): forget and retain need one each"
        )
    if entities > MAX_ENTITIES:
        raise DataError(f"--entities must be at most {MAX_ENTITIES} (got {entities})")
    if not 1 <= facts_per_entity <= MAX_FACTS:
        raise DataError(
            f"--facts-per-entity must be between 1 and {MAX_FACTS} (got {facts_per_entity})"
        )
    counts = split_counts(entities)
    if counts["10"] >= entities:
        raise DataError(f"--entities {entities} is too small to leave a retain set beside forget10")
    rng = random.Random(seed)
    people = make_people(entities + counts["10"], rng)
    trained = people[:entities]
    rows = [person_rows(p, i, facts_per_entity, rng) for i, p in enumerate(people)]
    full = [r for block in rows[:entities] for r in block]
    splits: dict[str, list[dict]] = {"full": full}
    pairs: dict[str, dict[str, str | None]] = {}
    for pct, k in counts.items():
        forget_people = {p.name for p in trained[entities - k :]}
        splits[f"forget{pct}"] = [r for r in full if r["entity"] in forget_people]
        splits[f"retain{100 - int(pct)}"] = [r for r in full if r["entity"] not in forget_people]
        splits[f"holdout{pct}"] = [r for block in rows[entities : entities + k] for r in block]
        pairs[f"forget{pct}"] = {"retain": f"retain{100 - int(pct)}", "holdout": f"holdout{pct}"}
    splits["world_facts"] = world_facts(rng)
    return splits, pairs
