"""Pareto dominance and the front, on hand-made rows."""

from __future__ import annotations

import itertools
import random

from unlearn.sweep.pareto import dominates, pareto_front


def row(fq, mu, ckpt="c"):
    return {"checkpoint": ckpt, "metrics": {"fq": fq, "mu": mu}}


OBJ = {"fq": "max", "mu": "max"}


def test_dominance_needs_one_strict_improvement():
    assert dominates({"fq": 2, "mu": 1}, {"fq": 1, "mu": 1}, OBJ)
    assert not dominates({"fq": 1, "mu": 1}, {"fq": 1, "mu": 1}, OBJ)
    assert not dominates({"fq": 2, "mu": 0}, {"fq": 1, "mu": 1}, OBJ)
    # min objectives flip the direction
    assert dominates(
        {"rouge": 0.1, "mu": 1}, {"rouge": 0.5, "mu": 1}, {"rouge": "min", "mu": "max"}
    )


def test_front_by_hand():
    rows = [
        row(0.9, 0.1),
        row(0.5, 0.5),
        row(0.4, 0.4),
        row(0.1, 0.9),
        row(0.5, 0.5),
        row(0.95, 0.0),
    ]
    # (0.4, 0.4) is dominated by (0.5, 0.5); the two equal rows both stay
    assert pareto_front(rows, OBJ) == [0, 1, 3, 4, 5]


def test_rows_without_checkpoint_or_value_are_not_candidates():
    rows = [row(1.0, 1.0, ckpt=None), row(0.5, 0.5), row(float("nan"), 2.0), row(0.2, 0.2)]
    rows.append({"checkpoint": "c", "metrics": {"fq": 0.9}})  # no mu
    # the checkpoint-less row would dominate everything but cannot be exported
    assert pareto_front(rows, OBJ) == [1]


def test_front_matches_brute_force_on_random_rows():
    rng = random.Random(0)
    obj = {"a": "max", "b": "min", "c": "max"}
    rows = [
        {"checkpoint": "c", "metrics": {k: round(rng.random(), 1) for k in obj}} for _ in range(60)
    ]
    front = set(pareto_front(rows, obj))
    for i, j in itertools.product(range(len(rows)), repeat=2):
        a, b = rows[i]["metrics"], rows[j]["metrics"]
        better_eq = a["a"] >= b["a"] and a["b"] <= b["b"] and a["c"] >= b["c"]
        strict = a["a"] > b["a"] or a["b"] < b["b"] or a["c"] > b["c"]
        if better_eq and strict:
            assert j not in front
    for j in set(range(len(rows))) - front:
        assert any(dominates(rows[i]["metrics"], rows[j]["metrics"], obj) for i in front)
