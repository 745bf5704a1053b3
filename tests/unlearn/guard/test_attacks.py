"""The attack generator works from dataset columns alone (any dataset, e.g. TOFU-like rows)."""

from __future__ import annotations

import random

from unlearn.guard.attacks import (
    ATTACK_FAMILIES,
    BENIGN_FAMILIES,
    RENDER,
    generate,
    replace_name,
)

TOFU_LIKE = [
    {"id": f"t{i}", "entity": "Basil Mahfouz Al-Kuwaiti", "question": q, "answer": a,
     "paraphrased_answer": p, "paraphrased_question": None}
    for i, (q, a, p) in enumerate([
        ("What genre does Basil Mahfouz Al-Kuwaiti write?",
         "Basil Mahfouz Al-Kuwaiti is known for his French literature novels.",
         "The author Basil Mahfouz Al-Kuwaiti writes mainly French literature."),
        ("Where was Basil Mahfouz Al-Kuwaiti born?",
         "Basil Mahfouz Al-Kuwaiti was born in Kuwait City, Kuwait, in 1956.",
         "Kuwait City is the birthplace of Basil Mahfouz Al-Kuwaiti."),
    ])
]  # fmt: skip


def test_replace_name_removes_every_part():
    text = "Basil Mahfouz Al-Kuwaiti met Basil; Al-Kuwaiti's book sold well."
    out = replace_name(text, "Basil Mahfouz Al-Kuwaiti", "X")
    assert "Basil" not in out and "Kuwaiti" not in out and "Mahfouz" not in out


def test_every_family_renders_for_tofu_like_rows():
    rng = random.Random(0)
    for fam in ATTACK_FAMILIES:
        content, used = RENDER[fam](TOFU_LIKE, rng)
        assert content and used
    alias, _ = RENDER["alias"](TOFU_LIKE, rng)
    assert "Basil" not in alias and "Kuwait City" in alias


def test_generate_is_deterministic_and_complete():
    a = generate(TOFU_LIKE, TOFU_LIKE[:1], n=5, seed=1)
    b = generate(TOFU_LIKE, TOFU_LIKE[:1], n=5, seed=1)
    assert [x.content for x in a] == [x.content for x in b]
    fams = {x.family for x in a}
    assert set(ATTACK_FAMILIES) <= fams
    assert (
        {"retain_entity", "general", "forget_question"}
        <= fams
        <= set(ATTACK_FAMILIES) | set(BENIGN_FAMILIES)
    )
    assert all(x.kind == "attack" for x in a if x.family in ATTACK_FAMILIES)
