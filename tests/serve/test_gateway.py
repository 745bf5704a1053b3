"""The ingress logic without Ray: a real guard (lexical index of the tiny dataset) in front of a
scripted model stream, so that failures can be injected where an HTTP test cannot reach."""

from __future__ import annotations

import asyncio
import json

import pytest
from starlette.requests import Request

from serve.config import GuardsConfig, KeyRing, parse_serve_config
from serve.ingress import Gateway
from serve.metrics import Metrics
from serve.openai_api import APIError

KEY = "sk-test-gateway-1"
PREAMBLE = "Let me look that up in the records I was trained on, which are usually right: "


class Script:
    """A model stream: the start item, the text in small chunks, the end item; records cancel."""

    def __init__(self, text: str, chunk: int = 3):
        pieces = [text[i : i + chunk] for i in range(0, len(text), chunk)]
        self.items = [{"type": "start", "prompt_tokens": 5, "max_tokens": 64}]
        self.items += [{"type": "delta", "text": p, "tokens": 1} for p in pieces]
        self.items += [{"type": "end", "finish_reason": "stop", "completion_tokens": len(pieces)}]
        self.cancelled = False
        self.sent = 0

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self.cancelled or self.sent >= len(self.items):
            raise StopAsyncIteration
        self.sent += 1
        return self.items[self.sent - 1]

    def cancel(self):
        self.cancelled = True


def request(body, key=KEY, headers=None):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    hdrs = {"content-type": "application/json", "content-length": str(len(raw))}
    if key is not None:
        hdrs["authorization"] = f"Bearer {key}"
    hdrs.update(headers or {})
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/chat/completions",
        "headers": [(k.encode(), v.encode()) for k, v in hdrs.items()],
    }
    sent = False

    async def receive():
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": raw, "more_body": False}

    return Request(scope, receive)


def gateway(guard, script_text, tmp_path, **cfg):
    cfg = parse_serve_config(
        {"models": {"m": "/unused"}, "audit_log": str(tmp_path / "audit.jsonl"), **cfg}
    )
    scripts = []

    def opener(model, payload):
        s = Script(script_text)
        scripts.append(s)
        return s

    gw = Gateway(cfg, KeyRing([KEY]), opener, Metrics(["m"]))
    gw.set_guards(GuardsConfig(), {"m": guard})
    return gw, scripts


def run(coro):
    return asyncio.run(coro)


async def body_of(resp):
    if hasattr(resp, "body_iterator"):
        return b"".join([c async for c in resp.body_iterator])
    return resp.body


def chat_body(question, **kw):
    return {"model": "m", "messages": [{"role": "user", "content": question}], **kw}


@pytest.fixture
def rows(tiny_data):
    from unlearn.data import Dataset

    ds = Dataset(tiny_data)
    return ds.records("forget10"), ds.records("retain90")


@pytest.fixture
def guard(tiny_data, tmp_path_factory):
    from unlearn.data import Dataset
    from unlearn.guard import Guard, GuardConfig
    from unlearn.guard.index import build_from_dataset, save_index

    path = tmp_path_factory.mktemp("gw-index") / "ix"
    save_index(build_from_dataset(Dataset(tiny_data), ["forget10"], embeddings=False), path)
    return Guard.load(path, GuardConfig(embeddings=False))


def test_leaking_output_is_cut_before_the_fact(guard, rows, tmp_path):
    forget, _ = rows
    fact = forget[0]
    leak = PREAMBLE + fact["answer"]
    gw, scripts = gateway(guard, leak, tmp_path)
    resp = run(gw.complete(request(chat_body(fact["question"])), "chat"))
    out = json.loads(resp.body)
    text = out["choices"][0]["message"]["content"]
    assert out["choices"][0]["finish_reason"] == "content_filter"
    assert leak.startswith(text) and len(text) < len(PREAMBLE)  # nothing of the fact
    assert scripts[0].cancelled  # generation was stopped at the hit
    # the audit line names the model and a key hash, never the text or the key
    line = (tmp_path / "audit.jsonl").read_text()
    rec = json.loads(line.splitlines()[-1])
    assert rec["model"] == "m" and rec["direction"] == "output" and rec["fact_ids"]
    assert KEY not in line and fact["entity"] not in line and fact["answer"] not in line


def test_streamed_leak_releases_a_prefix_then_content_filter(guard, rows, tmp_path):
    forget, _ = rows
    fact = forget[1]
    leak = PREAMBLE + fact["answer"]
    gw, _ = gateway(guard, leak, tmp_path)
    resp = run(gw.complete(request(chat_body(fact["question"], stream=True)), "chat"))
    raw = run(body_of(resp))
    events = [e for e in raw.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    objs = [json.loads(e[6:]) for e in events[:-1]]
    text = "".join(o["choices"][0]["delta"].get("content") or "" for o in objs)
    assert objs[-1]["choices"][0]["finish_reason"] == "content_filter"
    assert text and leak.startswith(text) and len(text) < len(PREAMBLE)
    words = fact["answer"].replace(".", "").split()
    assert not any(w.encode() in raw for w in words[-2:])  # the fact's payload never left


def test_benign_answer_passes_whole(guard, rows, tmp_path):
    _, retain = rows
    r = retain[0]
    gw, _ = gateway(guard, " " + r["answer"], tmp_path)
    resp = run(gw.complete(request(chat_body(r["question"], stream=True)), "chat"))
    objs = [
        json.loads(e[6:]) for e in run(body_of(resp)).split(b"\n\n") if e and e != b"data: [DONE]"
    ]
    text = "".join(o["choices"][0]["delta"].get("content") or "" for o in objs)
    assert text == " " + r["answer"] and objs[-1]["choices"][0]["finish_reason"] == "stop"


def test_an_unwritable_audit_log_is_refused_at_start(tmp_path):
    from unlearn.errors import ConfigError

    (tmp_path / "audit.jsonl").mkdir()  # a directory where the log file should be
    cfg = parse_serve_config(
        {"models": {"m": "/unused"}, "audit_log": str(tmp_path / "audit.jsonl")}
    )
    with pytest.raises(ConfigError, match="audit_log: cannot append"):
        Gateway(cfg, KeyRing([KEY]), lambda m, p: None, Metrics(["m"]))


def test_a_failed_audit_write_is_counted_and_makes_the_replica_unready(guard, rows, tmp_path):
    forget, _ = rows
    fact = forget[0]
    gw, _ = gateway(guard, PREAMBLE + fact["answer"], tmp_path)
    (tmp_path / "audit.jsonl").unlink()
    (tmp_path / "audit.jsonl").mkdir()  # the log becomes unwritable while serving
    resp = run(gw.complete(request(chat_body(fact["question"])), "chat"))
    out = json.loads(resp.body)
    assert out["choices"][0]["finish_reason"] == "content_filter"  # the block still stands
    assert fact["answer"] not in out["choices"][0]["message"]["content"]
    assert gw.metrics.audit_errors._value.get() == 1
    assert "audit log cannot be written" in gw.unready()
    (tmp_path / "audit.jsonl").rmdir()  # writable again: the next block is logged, ready again
    run(gw.complete(request(chat_body(fact["question"])), "chat"))
    assert gw.unready() is None and (tmp_path / "audit.jsonl").read_text().strip()


class RaisingGuard:
    """A guard whose every method raises (a bug, a corrupt index in memory)."""

    def __init__(self, real):
        self.index = real.index

    def check(self, *a, **k):
        raise RuntimeError("boom")


class OutputRaisingGuard:
    """Input checks pass; the stream guard's decisions raise."""

    def __init__(self, real):
        self.real = real
        self.index = real.index
        self.config = real.config
        self.ledger = real.ledger
        self.semantic = False
        self.holdback_chars = 8

    def check(self, *a, **k):
        return self.real.check(*a, **k)

    def decide(self, *a, **k):
        raise RuntimeError("boom")

    def _audit(self, *a, **k):
        pass


def test_a_raising_input_guard_fails_closed(guard, rows, tmp_path):
    _, retain = rows
    gw, scripts = gateway(RaisingGuard(guard), " model text", tmp_path)
    with pytest.raises(APIError) as err:
        run(gw.complete(request(chat_body(retain[0]["question"])), "chat"))
    assert err.value.status == 503 and err.value.code == "guard_unavailable"
    assert scripts == []  # the model never ran


def test_a_raising_output_guard_releases_nothing(guard, rows, tmp_path):
    _, retain = rows
    text = " " + retain[0]["answer"] + " and much more text after it to pass the holdback."
    gw, _ = gateway(OutputRaisingGuard(guard), text, tmp_path)
    with pytest.raises(APIError) as err:
        run(gw.complete(request(chat_body(retain[0]["question"])), "chat"))
    assert err.value.status == 503
    resp = run(gw.complete(request(chat_body(retain[0]["question"], stream=True)), "chat"))
    raw = run(body_of(resp))
    events = [json.loads(e[6:]) for e in raw.split(b"\n\n") if e and e != b"data: [DONE]"]
    assert events[-1]["error"]["code"] == "guard_unavailable"
    assert all(not (e.get("choices") or [{}])[0].get("delta", {}).get("content") for e in events)
    assert retain[0]["answer"].split()[-1].encode() not in raw


def test_no_guard_bound_is_503_and_unready(guard, rows, tmp_path):
    gw, scripts = gateway(guard, "x", tmp_path)
    gw.guards = {}
    assert "no guard bound to model(s) m" in gw.unready()
    with pytest.raises(APIError) as err:
        run(gw.complete(request(chat_body("hello there")), "chat"))
    assert err.value.status == 503 and scripts == []


def test_auth_and_size_limits(guard, tmp_path):
    gw, scripts = gateway(guard, "x", tmp_path, limits={"max_body_bytes": 200})
    for key in (None, "sk-wrong-key-00"):
        with pytest.raises(APIError) as err:
            run(gw.complete(request(chat_body("hi"), key=key), "chat"))
        assert err.value.status == 401 and err.value.code == "invalid_api_key"
        assert "sk-wrong" not in err.value.message
    with pytest.raises(APIError) as err:
        run(gw.complete(request(chat_body("x" * 300)), "chat"))
    assert err.value.status == 413
    # a body that lies about its length is cut off while it is read
    with pytest.raises(APIError) as err:
        run(gw.complete(request(chat_body("x" * 300), headers={"content-length": "10"}), "chat"))
    assert err.value.status == 413
    assert scripts == []
