"""Synthetic benchmark: determinism, split structure, and the CLI."""

from __future__ import annotations

import json

import pytest

from cli import main
from unlearn.data import Dataset
from unlearn.data.synth import synthesize
from unlearn.errors import DataError


def test_synth_cli_deterministic_by_seed(tmp_path, capsys):
    args = ["data", "synth", "--entities", "100", "--facts-per-entity", "10"]
    assert main([*args, "--out", str(tmp_path / "a"), "--seed", "1"]) == 0
    assert main([*args, "--out", str(tmp_path / "b"), "--seed", "1"]) == 0
    assert main([*args, "--out", str(tmp_path / "c"), "--seed", "2"]) == 0
    a, b, c = (Dataset(tmp_path / x) for x in "abc")
    assert a.info.splits == b.info.splits
    assert a.hash == b.hash
    assert a.hash != c.hash
    assert a.info.splits["full"]["rows"] == 1000
    assert a.info.splits["forget10"] == {**a.info.splits["forget10"], "rows": 100, "entities": 10}


def test_split_structure():
    splits, pairs = synthesize(100, 5, seed=0)
    ents = {k: {r["entity"] for r in v} for k, v in splits.items()}
    for pct, rest in (("01", "99"), ("05", "95"), ("10", "90")):
        assert not ents[f"forget{pct}"] & ents[f"retain{rest}"]
        assert ents[f"forget{pct}"] | ents[f"retain{rest}"] == ents["full"]
        assert not ents[f"holdout{pct}"] & ents["full"]
        assert len(ents[f"forget{pct}"]) == len(ents[f"holdout{pct}"]) == int(pct)
        assert pairs[f"forget{pct}"] == {"retain": f"retain{rest}", "holdout": f"holdout{pct}"}
    assert ents["forget01"] < ents["forget05"] < ents["forget10"]  # nested, like TOFU
    for r in splits["full"] + splits["world_facts"]:
        assert len(r["perturbed_answers"]) >= 3
        assert r["answer"] not in r["perturbed_answers"]
        assert r["paraphrased_answer"] not in r["perturbed_answers"]
        assert r["paraphrased_answer"] and r["paraphrased_answer"] != r["answer"]
    assert not {r["entity"] for r in splits["world_facts"]} & ents["full"]


def test_synth_rejects_impossible_sizes():
    with pytest.raises(DataError, match="--facts-per-entity must be between 1 and 12"):
        synthesize(10, 13, 0)
    with pytest.raises(DataError, match="--entities must be at least 2"):
        synthesize(1, 3, 0)


def test_inspect_prints_sizes_and_examples(tmp_path, capsys):
    main(
        [
            "data",
            "synth",
            "--out",
            str(tmp_path / "d"),
            "--entities",
            "20",
            "--facts-per-entity",
            "3",
        ]
    )
    capsys.readouterr()
    assert main(["data", "inspect", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    assert "forget10" in out and "retain90" in out and "world_facts" in out
    assert "[holdout05] id=" in out
    assert main(["data", "inspect", str(tmp_path / "d"), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["splits"]["forget10"]["entities"] == 2
    assert summary["splits"]["full"]["rows"] == 60


def test_cli_reports_errors_cleanly(tmp_path, capsys):
    assert main(["data", "inspect", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
