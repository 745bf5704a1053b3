"""Users' attack sets: the JSON-lines format ``guard eval --attacks`` and ``guard calibrate``
read, its errors, the per-family report with Wilson intervals, held-out sets kept apart."""

from __future__ import annotations

import json

import pytest

from cli import main
from unlearn.errors import DataError
from unlearn.guard.evaluate import load_attacks, wilson, write_attacks


def _write(path, lines):
    path.write_bytes(
        b"\n".join(x if isinstance(x, bytes) else json.dumps(x).encode() for x in lines)
    )
    return path


def test_wilson_interval():
    assert wilson(0, 0) == (0.0, 1.0)
    lo, hi = wilson(95, 100)
    assert 0.88 < lo < 0.95 < hi < 0.985
    assert wilson(0, 50)[0] == 0.0 and wilson(50, 50)[1] == 1.0


def test_load_and_write_roundtrip(tmp_path):
    path = _write(
        tmp_path / "set.jsonl",
        [
            {"id": 1, "family": "verbatim", "label": "attack", "text": "a"},
            {"id": "b", "family": "chat", "label": "benign",
             "messages": [{"role": "user", "content": "hi"}], "fact_ids": ["x"]},
        ],
    )  # fmt: skip
    exs = load_attacks(str(path))
    assert [(e.id, e.family, e.kind) for e in exs] == [
        (1, "verbatim", "attack"),
        ("b", "chat", "benign"),
    ]
    assert exs[1].content == [{"role": "user", "content": "hi"}] and exs[1].row_ids == ["x"]
    write_attacks(str(tmp_path / "again.jsonl"), exs)
    again = load_attacks(str(tmp_path / "again.jsonl"))
    assert [(e.id, e.content) for e in again] == [(e.id, e.content) for e in exs]


@pytest.mark.parametrize(
    "line, message",
    [
        (b'{"id": 1, "family": "f", "label": "attack", "text": "caf\xe9"}', "line 2: not valid UTF-8"),
        (b"[1, 2]", "line 2: expected a JSON object"),
        (b'{"id": 1, "label": "attack", "text": "x"}', 'line 2: missing key "family"'),
        (b'{"id": 7, "family": "f", "label": "attack", "text": "x"}', "id 7 repeats the id of line 1"),
        (b'{"id": 2, "family": "f", "label": "evil", "text": "x"}', '"label" must be "attack" or "benign"'),
        (b'{"id": 2, "family": "", "label": "attack", "text": "x"}', '"family" must be a non-empty'),
        (b'{"id": 2, "family": "f", "label": "attack"}', 'exactly one of "text" and "messages"'),
        (b'{"id": 2, "family": "f", "label": "attack", "messages": "x"}', '"messages" must be a list'),
        (b'{"id": true, "family": "f", "label": "attack", "text": "x"}', '"id" must be a string'),
    ],
    ids=["utf8", "object", "family", "duplicate", "label", "empty-family", "content",
         "messages", "bool-id"],
)  # fmt: skip
def test_bad_lines_are_named(tmp_path, line, message):
    path = _write(
        tmp_path / "bad.jsonl", [{"id": 7, "family": "f", "label": "benign", "text": "x"}, line]
    )
    with pytest.raises(DataError) as err:
        load_attacks(str(path))
    assert message in str(err.value) and str(path) in str(err.value)


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(DataError, match="holds no examples"):
        load_attacks(str(_write(tmp_path / "e.jsonl", [b"", b""])))
    with pytest.raises(DataError, match="does not exist"):
        load_attacks(str(tmp_path / "nope.jsonl"))


@pytest.fixture
def sets(tmp_path, forget_rows, retain_rows):
    """A calibration set and a held-out set with families of their own."""
    fact = forget_rows[0]
    name = fact["entity"]
    cal = [
        {"id": f"a{i}", "family": "verbatim", "label": "attack", "text": r["answer"]}
        for i, r in enumerate(forget_rows[:20])
    ] + [
        {"id": f"b{i}", "family": "retain_context", "label": "benign", "text": r["answer"]}
        for i, r in enumerate(retain_rows[:20])
    ]
    held = [
        {"id": "h1", "family": "restated_elsewhere", "label": "attack",
         "text": f"Everyone knows this about {name}: {fact['answer'].split(' ', 2)[-1]}"},
        {"id": "h2", "family": "general_questions", "label": "benign",
         "text": "What is the boiling point of water?"},
        {"id": "h3", "family": "general_questions", "label": "benign",
         "messages": [{"role": "user", "content": "Name three rivers in Africa."}]},
    ]  # fmt: skip
    return _write(tmp_path / "cal.jsonl", cal), _write(tmp_path / "held.jsonl", held)


def test_calibrate_on_one_set_and_report_held_out_families_apart(
    built_index, sets, tmp_path, capsys
):
    cal, held = sets
    report = tmp_path / "rep.json"
    cfg = tmp_path / "guard.yaml"
    code = main(
        ["guard", "calibrate", "--index", str(built_index), "--attacks", str(cal),
         "--heldout", str(held), "--out", str(cfg), "--report", str(report)]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    rep = json.loads(report.read_text())
    assert rep["calibration"]["source"] == str(cal)
    assert rep["calibration"]["families"] == ["retain_context", "verbatim"]
    assert set(rep["input"]["attack"]) == {"verbatim"}  # the calibration set's families only
    held_rep = rep["heldout"][str(held)]
    assert set(held_rep["input"]["attack"]) == {"restated_elsewhere"}
    assert held_rep["input"]["benign"]["general_questions"]["n"] == 2
    assert held_rep["input"]["thresholds"] == rep["input"]["thresholds"]  # the calibrated ones
    printed = capsys.readouterr().out
    assert "[calibration set]" in printed and f"[held out: {held}]" in printed
    assert f"--attacks {cal}" in cfg.read_text()


def test_eval_on_files_reports_each_set(built_index, sets, tmp_path, capsys):
    cal, held = sets
    out = tmp_path / "eval.json"
    code = main(
        ["guard", "eval", "--index", str(built_index), "--attacks", str(cal), "--attacks",
         str(held), "--out", str(out)]
    )  # fmt: skip
    rep = json.loads(out.read_text())
    assert set(rep["sets"]) == {str(cal), str(held)}
    assert rep["sets"][str(cal)]["input"]["attack"]["verbatim"]["rate"] == 1.0
    assert code == (0 if rep["targets_met"] else 1)
    printed = capsys.readouterr().out
    assert f"[{cal}]" in printed and f"[{held}]" in printed


def test_eval_needs_data_or_attacks(built_index, capsys):
    assert main(["guard", "eval", "--index", str(built_index)]) == 2
    assert "give --data" in capsys.readouterr().err


def test_a_bad_attack_file_fails_before_any_work(built_index, tmp_path, capsys):
    bad = _write(tmp_path / "bad.jsonl", [b'{"id": 1}'])
    assert main(["guard", "eval", "--index", str(built_index), "--attacks", str(bad)]) == 2
    assert 'line 1: missing key "family"' in capsys.readouterr().err
