"""``unlearn guard build | check | calibrate | eval`` end to end (lexical: fast)."""

from __future__ import annotations

import json

import pytest

from cli import main


@pytest.fixture(scope="module")
def built(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "ix"
    code = main(
        ["guard", "build", "--data", str(dataset.path), "--forget-split", "forget10",
         "--out", str(out), "--embeddings", "off"]
    )  # fmt: skip
    assert code == 0
    return out


def _write(path, lines):
    path.write_bytes(
        b"\n".join(x if isinstance(x, bytes) else json.dumps(x).encode() for x in lines)
    )
    return path


def test_build_writes_an_index(built, capsys):
    assert (built / "manifest.json").is_file()
    assert main(["guard", "build", "--data", "x", "--forget-split", "f", "--out", str(built)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_check_writes_one_decision_per_line(built, dataset, forget_rows, tmp_path, capsys):
    fact = forget_rows[0]
    inp = _write(
        tmp_path / "in.jsonl",
        [
            {"id": 1, "text": fact["answer"]},
            {"id": "q", "messages": [{"role": "user", "content": fact["question"]}]},
            {"id": 3, "text": fact["answer"], "direction": "output"},
            {"id": 4, "text": "The capital of France is Paris."},
        ],
    )
    out = tmp_path / "out.jsonl"
    audit = tmp_path / "audit.jsonl"
    args = ["guard", "check", "--index", str(built), "--input", str(inp), "--output", str(out)]
    assert main([*args, "--audit-log", str(audit), "--data", str(dataset.path)]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [1, "q", 3, 4]
    assert all(set(r) == {"id", "blocked", "score", "layer", "reason"} for r in rows)
    assert [r["blocked"] for r in rows] == [True, False, True, False]
    assert rows[0]["reason"] == "entity_content" and rows[3]["reason"] == "ok"
    assert len(audit.read_text().splitlines()) == 2
    assert "2 blocked" in capsys.readouterr().out
    assert main(args) == 2  # the output exists: refuse to overwrite
    assert main([*args, "--overwrite"]) == 0


@pytest.mark.parametrize(
    "line, message",
    [
        (b'{"id": 1, "text": "caf\xe9"}', "line 2: not valid UTF-8 (byte 0xe9"),
        (b"{not json", "line 2: not valid JSON"),
        (b'{"text": "x"}', 'line 2: expected an object with an "id"'),
        (b'{"id": 1}', 'exactly one of "text" and "messages"'),
        (b'{"id": 1, "text": "x", "direction": "up"}', '"direction" must be'),
    ],
    ids=["non-utf8", "json", "id", "text", "direction"],
)
def test_check_rejects_bad_lines_naming_them(built, tmp_path, capsys, line, message):
    inp = _write(tmp_path / "in.jsonl", [{"id": 0, "text": "fine"}, line])
    out = tmp_path / "out.jsonl"
    code = main(
        ["guard", "check", "--index", str(built), "--input", str(inp), "--output", str(out)]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and str(inp) in err
    assert not out.exists()  # nothing half-written


def test_check_against_another_dataset_version(built, tmp_path, capsys):
    from unlearn.data import write_dataset
    from unlearn.data.synth import synthesize

    splits, pairs = synthesize(40, 10, seed=9)
    write_dataset(tmp_path / "other", splits, source="unlearn.synth", pairs=pairs)
    inp = _write(tmp_path / "in.jsonl", [{"id": 0, "text": "fine"}])
    code = main(
        ["guard", "check", "--index", str(built), "--input", str(inp), "--output",
         str(tmp_path / "o.jsonl"), "--data", str(tmp_path / "other")]
    )  # fmt: skip
    assert code == 2 and "was built from dataset version" in capsys.readouterr().err


def test_calibrate_then_eval(built, dataset, tmp_path, capsys):
    report = tmp_path / "cal.json"
    code = main(
        ["guard", "calibrate", "--index", str(built), "--data", str(dataset.path), "--n", "30",
         "--target-fpr", "0.0", "--report", str(report)]
    )  # fmt: skip
    assert code == 0
    assert (built / "guard.yaml").is_file()
    cfg_text = (built / "guard.yaml").read_text()
    assert cfg_text.startswith("# guard config calibrated by `unlearn guard calibrate")
    rep = json.loads(report.read_text())
    assert rep["input"]["benign"]["retain_entity"]["rate"] == 0.0
    capsys.readouterr()
    out = tmp_path / "eval.json"
    code = main(
        ["guard", "eval", "--index", str(built), "--data", str(dataset.path), "--n", "30",
         "--out", str(out)]
    )  # fmt: skip
    rep = json.loads(out.read_text())
    assert code == 0 and rep["targets_met"]
    assert rep["input"]["thresholds"]["cov"] == pytest.approx(
        __import__("yaml").safe_load(cfg_text)["lexical_input"]["cov"]
    )  # eval picked up the calibrated INDEX/guard.yaml
    printed = capsys.readouterr().out
    assert "paraphrase" in printed and '"targets_met": true' in printed


def test_config_errors_name_the_key(built, tmp_path, capsys):
    inp = _write(tmp_path / "in.jsonl", [{"id": 0, "text": "fine"}])
    code = main(
        ["guard", "check", "--index", str(built), "--input", str(inp), "--output",
         str(tmp_path / "o.jsonl"), "--set", "mosaic_limit=1"]
    )  # fmt: skip
    assert code == 2 and "mosaic_limit" in capsys.readouterr().err
