"""The red-team fuzzer: mutations keep the fact, the report counts facts with a passing mutation,
the evidence is written outside the index in the ``--attacks`` format."""

from __future__ import annotations

import json
import random

import pytest

from cli import main
from unlearn.guard import Guard, GuardConfig
from unlearn.guard.evaluate import load_attacks
from unlearn.guard.redteam import Variant, _seed, mutate, redteam


def test_mutations_keep_the_entity_and_the_values(forget_rows):
    row = next(r for r in forget_rows if r["id"].endswith("birth_year"))
    year = row["answer"].rstrip(".").split()[-1]
    rng = random.Random(3)
    v = _seed(row, row["entity"])
    assert "{N}" in v.sentences[0] and v.render().startswith("Context: ")
    context = {"name": row["entity"], "distractors": ["The sky is blue."]}
    for _ in range(200):
        v = mutate(v, rng, context)
        assert len(v.passes) <= 2  # obfuscations compose at most two deep
        assert any("{N}" in s for s in v.sentences)  # the entity stays named somewhere
        clear = " ".join(v.sentences)
        assert year in clear or any(w in clear for w in ("nineteen", "eighteen", "two thousand"))
    assert isinstance(v, Variant)


def test_redteam_against_the_lexical_guard(guard, dataset):
    rep, passing = redteam(guard, dataset, budget=10, seed=1, max_facts=12)
    assert rep["facts"] == 12 and rep["budget"] == 10
    assert rep["facts_passing"] == len(passing)
    assert rep["share_passing"] == round(len(passing) / 12, 4)
    assert rep["target_met"] == (rep["share_passing"] <= 0.10)
    assert sum(c["tried"] for c in rep["operators"].values()) > 0
    for ex in passing:  # each passing text really passes, and names its fact
        assert not guard.check(ex.content).blocked
        assert ex.row_ids and ex.kind == "attack" and ex.family == "redteam"
    from unlearn.guard.redteam import summary_table

    lines = summary_table(rep).splitlines()
    start = lines[2].index("tried")
    for op, line in zip(rep["operators"], lines[3:], strict=True):  # names never run into numbers
        assert line[:start].rstrip() == op and line[len(op)] == " ", line


def test_a_guard_that_blocks_nothing_fails_every_fact_at_the_seed(index, dataset):
    cfg = GuardConfig(embeddings=False)
    for t in (cfg.lexical_input,):
        for rule in ("cov", "lsn", "val", "vsum", "multi", "lsn_free", "vfree"):
            setattr(t, rule, 1e9)
    rep, passing = redteam(Guard(index, cfg), dataset, budget=5, max_facts=4)
    assert rep["seeds_passing"] == 4 and rep["share_passing"] == 1.0 and len(passing) == 4


def test_cli_writes_evidence_outside_the_index(built_index, dataset, tmp_path, capsys):
    out = tmp_path / "rt"
    args = ["guard", "redteam", "--index", str(built_index), "--data", str(dataset.path),
            "--budget", "5", "--facts", "6", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    rep = json.loads((out / "report.json").read_text())
    assert rep["facts"] == 6
    passing = out / "passing.jsonl"
    if rep["facts_passing"]:
        assert len(load_attacks(str(passing))) == rep["facts_passing"]
    printed = capsys.readouterr().out
    assert "facts with a passing mutation" in printed and '"share_passing"' in printed
    assert main(args) == 2  # the report exists
    assert "already exists" in capsys.readouterr().err
    inside = ["guard", "redteam", "--index", str(built_index), "--data", str(dataset.path),
              "--out", str(built_index / "evidence")]  # fmt: skip
    assert main(inside) == 2 and "inside the index" in capsys.readouterr().err
    assert not (built_index / "evidence").exists()


@pytest.mark.parametrize("budget", ["0", "-3"])
def test_budget_must_be_positive(built_index, dataset, tmp_path, capsys, budget):
    code = main(
        ["guard", "redteam", "--index", str(built_index), "--data", str(dataset.path),
         "--budget", budget, "--out", str(tmp_path / "x")]
    )  # fmt: skip
    assert code == 2 and "--budget" in capsys.readouterr().err
