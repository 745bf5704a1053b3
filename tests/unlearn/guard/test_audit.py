"""An audit record that cannot be written is never silent (issue 16 item 3); ``guard check``
refuses two input lines with one id."""

from __future__ import annotations

import json
import logging
import os

import pytest

from cli import main
from unlearn.guard import AuditLog, Guard, GuardConfig, StreamGuard
from unlearn.guard.guard import AuditError


class _Broken(AuditLog):
    def write(self, record):
        raise OSError(28, "No space left on device")


@pytest.fixture
def fact(forget_rows):
    return forget_rows[0]


def test_default_policy_turns_the_block_into_a_guard_error(index, fact):
    g = Guard(index, GuardConfig(embeddings=False), audit=_Broken())
    assert g.config.on_audit_error == "block"
    d = g.check(fact["answer"])
    assert d.blocked and d.reason == "guard_error" and d.layer == "error"
    assert fact["id"] in d.matched_fact_ids  # what was matched is still said
    assert g.audit_failures == 1 and "No space left" in g.last_audit_error
    ok = g.check("The capital of France is Paris.")  # nothing to log: unaffected
    assert not ok.blocked and g.audit_failures == 1


def test_raise_policy(index, fact):
    g = Guard(index, GuardConfig(embeddings=False, on_audit_error="raise"), audit=_Broken())
    with pytest.raises(AuditError, match="could not be written"):
        g.check(fact["answer"])


def test_warn_policy_logs_and_keeps_the_decision(index, fact, caplog):
    g = Guard(index, GuardConfig(embeddings=False, on_audit_error="warn"), audit=_Broken())
    with caplog.at_level(logging.WARNING, logger="unlearn.guard"):
        d = g.check(fact["answer"])
    assert d.blocked and d.reason == "entity_content"
    assert "audit record lost" in caplog.text and g.audit_failures == 1


def test_stream_block_with_a_broken_audit_log_is_a_guard_error(index, fact):
    g = Guard(index, GuardConfig(embeddings=False), audit=_Broken())
    sg = StreamGuard(g)
    out = sg.feed(fact["answer"] + " and more words follow here. ") + sg.close()
    assert sg.blocked and out == "" and sg.decision.reason == "guard_error"


def test_policy_value_is_checked(tmp_path, index_dir, capsys):
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"id": 1, "text": "x"}))
    code = main(
        ["guard", "check", "--index", str(index_dir), "--input", str(inp), "--output",
         str(tmp_path / "o.jsonl"), "--set", "on_audit_error=ignore"]
    )  # fmt: skip
    assert code == 2 and "on_audit_error" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through file permissions")
def test_unwritable_audit_log_fails_the_check_before_any_work(tmp_path, index_dir, fact, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    os.chmod(locked, 0o500)
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"id": 1, "text": fact["answer"]}))
    out = tmp_path / "out.jsonl"
    code = main(
        ["guard", "check", "--index", str(index_dir), "--input", str(inp), "--output", str(out),
         "--audit-log", str(locked / "audit.jsonl")]
    )  # fmt: skip
    assert code == 2 and "cannot be written" in capsys.readouterr().err and not out.exists()


def test_audit_failure_during_the_run_fails_the_command(tmp_path, index_dir, fact, capsys):
    # a path that is a directory: the pre-flight open fails (works as root too)
    audit = tmp_path / "audit-dir"
    audit.mkdir()
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"id": 1, "text": fact["answer"]}))
    out = tmp_path / "out.jsonl"
    code = main(
        ["guard", "check", "--index", str(index_dir), "--input", str(inp), "--output", str(out),
         "--audit-log", str(audit)]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and "audit log" in err and "cannot be written" in err
    assert not out.exists()  # no output that looks complete


def test_cli_exits_non_zero_when_a_record_is_lost_mid_run(
    tmp_path, index_dir, fact, monkeypatch, capsys
):
    calls = {"n": 0}
    orig = AuditLog.write

    def flaky(self, record):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(5, "Input/output error")
        return orig(self, record)

    monkeypatch.setattr(AuditLog, "write", flaky)
    inp = tmp_path / "in.jsonl"
    inp.write_text("\n".join(json.dumps({"id": i, "text": fact["answer"]}) for i in range(3)))
    out = tmp_path / "out.jsonl"
    code = main(
        ["guard", "check", "--index", str(index_dir), "--input", str(inp), "--output", str(out),
         "--audit-log", str(tmp_path / "audit.jsonl")]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: audit record could not be written")
    assert "Input/output error" in err and not out.exists()


def test_duplicate_ids_are_refused_naming_both_lines(tmp_path, index_dir, capsys):
    inp = tmp_path / "in.jsonl"
    inp.write_text(
        "\n".join(
            json.dumps(x)
            for x in ({"id": "a", "text": "x"}, {"id": 2, "text": "y"}, {"id": "a", "text": "z"})
        )
    )
    out = tmp_path / "out.jsonl"
    code = main(
        ["guard", "check", "--index", str(index_dir), "--input", str(inp), "--output", str(out)]
    )
    err = capsys.readouterr().err
    assert code == 2 and "line 3: id 'a' repeats the id of line 1" in err and not out.exists()
    # 2 and "2" are different ids
    inp.write_text(
        "\n".join(json.dumps(x) for x in ({"id": 2, "text": "x"}, {"id": "2", "text": "y"}))
    )
    assert (
        main(
            ["guard", "check", "--index", str(index_dir), "--input", str(inp), "--output", str(out)]
        )
        == 0
    )
