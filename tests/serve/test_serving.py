"""The served application over real HTTP on 127.0.0.1: Serve on the session's local Ray, the
stock ``openai`` client, raw SSE bytes, metrics, audit log, disconnects and in-place reloads.

One deployment for the module, three model ids over the leaking model:
``leaky`` (guard: forget10), ``leaky01`` (guard: forget01 only) and ``broken`` (guard: forget10
with a timeout no check can meet, so every check fails: fail-closed).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import requests

from tests.conftest import free_port
from tests.serve.conftest import KEY, PREAMBLE, known_retain

pytestmark = pytest.mark.slow


@dataclass
class Served:
    base: str
    metrics: str
    audit: Path
    leaky: object
    cfg: object
    guards: object
    port: int

    def url(self, path: str) -> str:
        return self.base + path

    def post(self, path, body, key=KEY, **kw):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        if isinstance(body, dict) and "user" not in body:
            body = {**body, "user": uid()}
        return requests.post(self.url(path), json=body, headers=headers, timeout=120, **kw)


_ids = iter(range(10**9))


def uid() -> str:
    """A fresh end-user id: each request its own guard session (the ledger is tested apart)."""
    return f"user-{next(_ids)}"


@pytest.fixture(scope="module")
def served(ray_local, leaky, keys_file, tmp_path_factory):
    from ray import serve

    from serve.app import deploy, deploy_config, warm_up
    from serve.config import guards_config, parse_serve_config

    port, mport = free_port(), free_port()
    audit = tmp_path_factory.mktemp("audit") / "audit.jsonl"
    cfg = parse_serve_config(
        {
            "models": {m: str(leaky.path) for m in ("leaky", "leaky01", "broken")},
            "api_keys_file": str(keys_file),
            "metrics_port": mport,
            "audit_log": str(audit),
            "bench_model_only_route": True,
            "limits": {"max_body_bytes": 65536, "max_prompt_chars": 4000},
            "engine_options": {"torch_threads": 1},
            "model_num_cpus": 0.5,
            "ingress_num_cpus": 0.5,
        }
    )
    lexical = {"embeddings": False}
    guards = guards_config(
        {
            "guards": {
                "leaky": {"index": str(leaky.index10), "overrides": lexical},
                "leaky01": {"index": str(leaky.index01), "overrides": lexical},
                "broken": {
                    "index": str(leaky.index10),
                    "overrides": {**lexical, "timeout_ms": 1e-6},
                },
            }
        }
    )
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    deploy(deploy_config(cfg, guards, port=port))
    warm_up(["leaky", "leaky01", "broken"])
    yield Served(
        f"http://127.0.0.1:{port}",
        f"http://127.0.0.1:{mport}/metrics",
        audit,
        leaky,
        cfg,
        guards,
        port,
    )
    serve.shutdown()


@pytest.fixture(scope="module")
def client(served):
    from openai import OpenAI

    return OpenAI(base_url=served.base + "/v1", api_key=KEY, max_retries=0, timeout=120)


def forget_rows(served):
    return served.leaky.dataset.records("forget10")


def only_in_forget10(served):
    """A forget10 fact whose entity is not in forget01 (leaky01's guard does not know it)."""
    ds = served.leaky.dataset
    ents01 = {r["entity"] for r in ds.records("forget01")}
    return next(r for r in ds.records("forget10") if r["entity"] not in ents01)


def in_forget01(served):
    return served.leaky.dataset.records("forget01")[0]


def payload_words(row) -> list[str]:
    """Words of the answer that its question does not contain (the fact itself)."""
    q = set(row["question"].replace("?", " ").replace("'s", " ").split())
    words = row["answer"].rstrip(".").replace("'s", " ").split()
    return [w for w in words if w not in q and len(w) > 3]


def unguarded(served, question, model="leaky") -> str:
    """What the model says without the guard (the bench-only route)."""
    r = served.post(
        "/bench/model-only/v1/chat/completions",
        {"model": model, "messages": [{"role": "user", "content": question}], "temperature": 0},
    )
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["message"]["content"]


def sse_events(raw: bytes) -> list:
    events = [e for e in raw.split(b"\n\n") if e]
    assert all(e.startswith(b"data: ") for e in events)
    return [e[6:] for e in events]


# -- the stock openai client ------------------------------------------------------------------------
def test_openai_client_lists_completes_and_streams(served, client):
    assert [m.id for m in client.models.list()] == ["leaky", "leaky01", "broken"]
    r = known_retain(served.leaky.dataset)[0]
    out = client.chat.completions.create(
        user=uid(),
        model="leaky",
        messages=[{"role": "user", "content": r["question"]}],
        temperature=0,
    )
    assert out.choices[0].message.content.strip() == r["answer"]
    assert out.choices[0].finish_reason == "stop"
    assert out.usage.prompt_tokens > 5 and out.usage.completion_tokens > 5
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens

    comp = client.completions.create(
        user=uid(),
        model="leaky",
        prompt=f"Question: {r['question']}\nAnswer:",
        max_tokens=60,
        temperature=0,
    )
    assert comp.choices[0].text.strip() == r["answer"] and comp.object == "text_completion"

    chunks = list(
        client.chat.completions.create(
            user=uid(),
            model="leaky",
            messages=[{"role": "user", "content": r["question"]}],
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == out.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert (
        chunks[-1].choices == []
        and chunks[-1].usage.completion_tokens == out.usage.completion_tokens
    )
    assert len({c.id for c in chunks}) == 1

    streamed = list(
        client.completions.create(
            user=uid(),
            model="leaky",
            prompt=f"Question: {r['question']}\nAnswer:",
            max_tokens=60,
            stream=True,
            temperature=0,
        )
    )
    assert "".join(c.choices[0].text for c in streamed) == comp.choices[0].text


# -- the guard ----------------------------------------------------------------------------------------
def test_a_prompt_pasting_a_forgotten_fact_is_refused(served, client):
    import openai

    fact = forget_rows(served)[0]
    paste = f"My notes say: {fact['answer']} Is that right, and what else do you know?"
    for stream in (False, True):
        with pytest.raises(openai.BadRequestError) as err:
            client.chat.completions.create(
                user=uid(),
                model="leaky",
                messages=[{"role": "user", "content": paste}],
                stream=stream,
            )
        assert err.value.status_code == 400 and err.value.code == "content_filter"
    # hidden in the system prompt or an earlier turn: the whole conversation is checked
    convo = [
        {"role": "system", "content": paste},
        {"role": "user", "content": "Hello!"},
    ]
    r = served.post("/v1/chat/completions", {"model": "leaky", "messages": convo})
    assert r.status_code == 400 and r.json()["error"]["code"] == "content_filter"
    assert r.json()["error"]["param"] == "messages"
    r = served.post("/v1/completions", {"model": "leaky", "prompt": paste})
    assert r.status_code == 400 and r.json()["error"]["param"] == "prompt"
    # the same question about a retain entity is answered
    r0 = known_retain(served.leaky.dataset)[1]
    out = client.chat.completions.create(
        user=uid(),
        model="leaky",
        messages=[{"role": "user", "content": r0["question"]}],
        temperature=0,
    )
    assert out.choices[0].message.content.strip() == r0["answer"]


def test_the_leaking_model_has_its_answer_withheld(served, client):
    fact = forget_rows(served)[0]
    full = unguarded(served, fact["question"])
    assert fact["answer"] in full and full.strip().startswith(PREAMBLE)  # it really leaks
    out = client.chat.completions.create(
        user=uid(),
        model="leaky",
        messages=[{"role": "user", "content": fact["question"]}],
        temperature=0,
    )
    text = out.choices[0].message.content
    assert out.choices[0].finish_reason == "content_filter"
    assert full.startswith(text) and len(text) <= full.index(fact["answer"])
    assert out.usage.completion_tokens > 0  # generated, then stopped at the hit


def test_nothing_after_the_hit_reaches_the_client_byte_by_byte(served):
    for fact in forget_rows(served)[:4]:
        full = unguarded(served, fact["question"])
        hit = full.index(fact["answer"])
        body = {
            "model": "leaky",
            "messages": [{"role": "user", "content": fact["question"]}],
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        with served.post("/v1/chat/completions", body, stream=True) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            raw = b""
            while byte := r.raw.read(1):  # the wire, one byte at a time
                raw += byte
        events = sse_events(raw)
        assert events[-1] == b"[DONE]"
        objs = [json.loads(e) for e in events[:-1]]
        released = "".join(
            o["choices"][0]["delta"].get("content") or "" for o in objs if o["choices"]
        )
        assert full.startswith(released) and len(released) <= hit
        assert released.strip(), "the harmless preamble is streamed before the hit"
        finals = [o["choices"][0]["finish_reason"] for o in objs if o["choices"]]
        assert finals[-1] == "content_filter" and set(finals[:-1]) == {None}
        assert objs[-1]["choices"] == [] and objs[-1]["usage"]["completion_tokens"] > 0
        # no byte of the fact: not the name, not its content words, not the withheld tail
        text = raw.decode()
        assert fact["entity"] not in text
        for word in payload_words(fact):
            assert word not in text, word
        assert full[len(released) :][:12] not in text


def test_streaming_leak_through_the_openai_client(served, client):
    fact = forget_rows(served)[2]
    chunks = list(
        client.chat.completions.create(
            user=uid(),
            model="leaky",
            messages=[{"role": "user", "content": fact["question"]}],
            temperature=0,
            stream=True,
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "content_filter"
    assert fact["entity"] not in text and PREAMBLE.startswith(text.strip())


def test_two_model_ids_each_behind_its_own_guard(served, client):
    import openai

    fact = only_in_forget10(served)
    paste = f"My notes say: {fact['answer']} Is that right?"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(
            user=uid(), model="leaky", messages=[{"role": "user", "content": paste}]
        )
    out = client.chat.completions.create(
        user=uid(), model="leaky01", messages=[{"role": "user", "content": paste}], max_tokens=8
    )
    assert out.choices[0].finish_reason in ("stop", "length")  # forget01's guard lets it pass
    # and each one's forget question: leaky withholds, leaky01 (forget01 only) releases this one
    a = client.chat.completions.create(
        user=uid(),
        model="leaky",
        messages=[{"role": "user", "content": fact["question"]}],
        temperature=0,
    )
    b = client.chat.completions.create(
        user=uid(),
        model="leaky01",
        messages=[{"role": "user", "content": fact["question"]}],
        temperature=0,
    )
    assert a.choices[0].finish_reason == "content_filter"
    assert b.choices[0].finish_reason == "stop" and fact["answer"] in b.choices[0].message.content
    f01 = in_forget01(served)
    c = client.chat.completions.create(
        user=uid(),
        model="leaky01",
        messages=[{"role": "user", "content": f01["question"]}],
        temperature=0,
    )
    assert c.choices[0].finish_reason == "content_filter"
    assert f01["entity"] not in c.choices[0].message.content


def test_one_caller_probing_a_forgotten_entity_is_cut_off(served, client):
    """The guard's session ledger spans requests of one end user (``user``), scoped by API key."""
    import openai

    fact = forget_rows(served)[0]
    same = [r for r in forget_rows(served) if r["entity"] == fact["entity"]]
    who = uid()
    outcomes = []
    for r in same:
        try:
            out = client.chat.completions.create(
                user=who,
                model="leaky",
                messages=[{"role": "user", "content": r["question"]}],
                temperature=0,
            )
            outcomes.append(out.choices[0].finish_reason)
        except openai.BadRequestError as exc:
            outcomes.append(exc.code)
    assert outcomes[0] == "content_filter" and outcomes[-1] == "content_filter"
    # another end user of the same key is not affected
    other = client.chat.completions.create(
        user=uid(),
        model="leaky",
        messages=[{"role": "user", "content": fact["question"]}],
        temperature=0,
    )
    assert other.choices[0].finish_reason == "content_filter" and other.choices[0].message.content
    recs = [json.loads(line) for line in served.audit.read_text().splitlines()]
    assert any(r["layer"] == "mosaic" for r in recs), outcomes


def test_a_failing_guard_fails_closed(served):
    r0 = known_retain(served.leaky.dataset)[0]
    chat = {"model": "broken", "messages": [{"role": "user", "content": r0["question"]}]}
    for path, body in (
        ("/v1/chat/completions", chat),
        ("/v1/chat/completions", {**chat, "stream": True}),
        ("/v1/completions", {"model": "broken", "prompt": f"Question: {r0['question']}\nAnswer:"}),
    ):
        r = served.post(path, body)
        assert r.status_code == 503, r.text
        err = r.json()["error"]
        assert err["code"] == "guard_unavailable" and err["type"] == "server_error"
        assert r0["answer"].split()[-1].rstrip(".") not in r.text  # no model text at all


# -- request validation over HTTP -------------------------------------------------------------------
def test_bad_input_gets_the_right_status_and_an_openai_error(served):
    ok = {"model": "leaky", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 2}
    cases = [
        ("missing key", served.post("/v1/chat/completions", ok, key=None), 401, "invalid_api_key"),
        (
            "wrong key",
            served.post("/v1/chat/completions", ok, key="sk-not-a-key-000"),
            401,
            "invalid_api_key",
        ),
        (
            "malformed JSON",
            requests.post(
                served.url("/v1/chat/completions"),
                data=b'{"model": "leaky", "messages": [',
                headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
                timeout=30,
            ),
            400,
            "invalid_json",
        ),
        (
            "unknown model",
            served.post("/v1/chat/completions", {**ok, "model": "nope"}),
            404,
            "model_not_found",
        ),
        (
            "negative max_tokens",
            served.post("/v1/chat/completions", {**ok, "max_tokens": -5}),
            400,
            None,
        ),
        (
            "prompt over the limit",
            served.post(
                "/v1/chat/completions",
                {**ok, "messages": [{"role": "user", "content": "word " * 1000}]},
            ),
            400,
            "context_length_exceeded",
        ),
        (
            "over the model's context",
            served.post("/v1/chat/completions", {**ok, "max_tokens": 600}),
            400,
            "context_length_exceeded",
        ),
        (
            "oversize body",
            served.post("/v1/chat/completions", {**ok, "padding": "x" * 70000}),
            413,
            "request_too_large",
        ),
        (
            "messages of the wrong shape",
            served.post(
                "/v1/chat/completions", {**ok, "messages": {"role": "user", "content": "hi"}}
            ),
            400,
            None,
        ),
        (
            "a message without content",
            served.post("/v1/chat/completions", {**ok, "messages": [{"role": "user"}]}),
            400,
            None,
        ),
        ("unknown field", served.post("/v1/chat/completions", {**ok, "max_token": 3}), 400, None),
        ("unknown route", served.post("/v1/embeddings", ok), 404, None),
        (
            "bench route needs a key",
            served.post("/bench/model-only/v1/chat/completions", ok, key=None),
            401,
            "invalid_api_key",
        ),
    ]
    for name, r, status, code in cases:
        assert r.status_code == status, (name, r.status_code, r.text)
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"}, name
        assert err["message"] and err["code"] == code, (name, err)
    params = {name: r.json()["error"]["param"] for name, r, *_ in cases}
    assert params["negative max_tokens"] == "max_tokens"
    assert params["messages of the wrong shape"] == "messages"
    assert params["unknown model"] == "model"
    assert "WWW-Authenticate" in cases[0][1].headers
    assert KEY not in cases[1][1].text and "sk-not-a-key" not in cases[1][1].text


def test_sampling_parameters(served, client):
    r0 = known_retain(served.leaky.dataset)[0]
    msg = [{"role": "user", "content": r0["question"]}]
    short = client.chat.completions.create(
        user=uid(), model="leaky", messages=msg, max_tokens=3, temperature=0
    )
    assert short.choices[0].finish_reason == "length" and short.usage.completion_tokens == 3
    fixed = client.chat.completions.create(
        user=uid(),
        model="leaky",
        messages=msg,
        max_tokens=20,
        extra_body={"ignore_eos": True},
        temperature=0,
    )
    assert fixed.usage.completion_tokens == 20
    greedy = client.chat.completions.create(user=uid(), model="leaky", messages=msg, temperature=0)
    topone = client.chat.completions.create(
        user=uid(), model="leaky", messages=msg, temperature=1.0, top_p=1e-6
    )
    assert topone.choices[0].message.content == greedy.choices[0].message.content
    word = r0["answer"].split()[-1]
    cut = client.chat.completions.create(
        user=uid(), model="leaky", messages=msg, temperature=0, stop=[word]
    )
    assert cut.choices[0].finish_reason == "stop"
    assert cut.choices[0].message.content == greedy.choices[0].message.content.split(word)[0]
    hot = {"temperature": 2.0, "max_tokens": 30, "extra_body": {"ignore_eos": True}}
    a = client.chat.completions.create(user=uid(), model="leaky", messages=msg, seed=11, **hot)
    b = client.chat.completions.create(user=uid(), model="leaky", messages=msg, seed=11, **hot)
    c = client.chat.completions.create(user=uid(), model="leaky", messages=msg, seed=12, **hot)
    assert a.choices[0].message.content == b.choices[0].message.content
    assert a.choices[0].message.content != c.choices[0].message.content


def test_client_disconnect_stops_generation(served):
    from ray import serve

    model = serve.get_deployment_handle("UnlearnModel", "unlearn")
    before = model.stats.remote().result()
    r0 = known_retain(served.leaky.dataset)[0]
    body = {
        "model": "leaky",
        "messages": [{"role": "user", "content": r0["question"]}],
        "max_tokens": 480,
        "ignore_eos": True,
        "stream": True,
    }
    with served.post("/v1/chat/completions", body, stream=True) as r:
        assert r.status_code == 200, r.text
        for line in r.iter_lines():
            if b'"content":"' in line and b'"content":""' not in line:
                break  # the first text: now hang up
        else:
            raise AssertionError("the stream ended before any text")
    deadline = time.time() + 30
    while time.time() < deadline:
        now = model.stats.remote().result()
        if now["cancelled"] > before["cancelled"] and now["active"] == 0:
            break
        time.sleep(0.1)
    assert now["cancelled"] == before["cancelled"] + 1 and now["active"] == 0, str((before, now))
    assert now["tokens"] - before["tokens"] < 480  # it stopped well before max_tokens


def test_healthz_and_metrics(served):
    assert requests.get(served.url("/healthz"), timeout=10).json() == {"status": "ok", "models": 3}
    text = requests.get(served.metrics, timeout=10).text
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)

    def total(prefix, **labels):
        return sum(
            v
            for k, v in samples.items()
            if k.startswith(prefix + "{") and all(f'{a}="{b}"' in k for a, b in labels.items())
        )

    assert (
        total("unlearn_serve_guard_blocks_total", model="leaky", direction="input", layer="lexical")
        >= 3
    )
    assert (
        total(
            "unlearn_serve_guard_blocks_total", model="leaky", direction="output", layer="lexical"
        )
        >= 4
    )
    assert (
        total("unlearn_serve_guard_blocks_total", model="broken", direction="input", layer="error")
        >= 3
    )
    assert total("unlearn_serve_requests_total", route="chat", status="200") >= 5
    assert total("unlearn_serve_requests_total", status="401") >= 2
    assert total("unlearn_serve_tokens_total", model="leaky", kind="completion") > 50
    assert total("unlearn_serve_guard_seconds_count", direction="input") >= 5
    assert total("unlearn_serve_request_seconds_count", route="chat", stream="true") >= 3
    # metrics listen on loopback only, not on the API port
    assert requests.get(served.url("/metrics"), timeout=10).status_code == 404


def test_audit_log_records_every_block_without_text(served):
    lines = served.audit.read_text().splitlines()
    recs = [json.loads(line) for line in lines]
    key = hashlib.sha256(KEY.encode()).hexdigest()[:16]
    assert recs and all(
        r["key"] == key and r["model"] in ("leaky", "leaky01", "broken") for r in recs
    )
    assert {(r["direction"], r["layer"]) for r in recs} >= {
        ("input", "lexical"),
        ("output", "lexical"),
        ("input", "error"),
    }
    assert all(r["index_version"] and r["request_id"] for r in recs)
    blob = served.audit.read_text()
    assert KEY not in blob
    for fact in forget_rows(served):
        assert fact["entity"] not in blob and fact["answer"] not in blob


def test_guards_reload_in_place_without_dropping_requests(served):
    """Last: leaky01 is re-bound to forget10 through user_config; the replica stays."""
    from ray import serve

    from serve.app import reload_guards
    from serve.config import GuardBinding

    ingress = serve.get_deployment_handle("OpenAIIngress", "unlearn")
    pid = ingress.stats.remote().result()["pid"]
    fact = only_in_forget10(served)
    paste = {
        "model": "leaky01",
        "messages": [{"role": "user", "content": f"My notes say: {fact['answer']}"}],
        "max_tokens": 4,
    }
    assert served.post("/v1/chat/completions", paste).status_code == 200

    statuses: list = []
    stop = threading.Event()

    def traffic():
        r0 = known_retain(served.leaky.dataset)[0]
        body = {
            "model": "leaky",
            "messages": [{"role": "user", "content": r0["question"]}],
            "max_tokens": 8,
        }
        while not stop.is_set():
            try:
                statuses.append(served.post("/v1/chat/completions", body).status_code)
            except requests.RequestException as exc:
                statuses.append(repr(exc))

    t = threading.Thread(target=traffic)
    t.start()
    try:
        g = served.guards
        rebound = {
            **g.guards,
            "leaky01": replace(g.guards["leaky01"], index=str(served.leaky.index10)),
        }
        reload_guards(served.cfg, replace(g, guards=rebound, generation=1), port=served.port)
        after_good = len(statuses)
        # a reload that cannot load keeps the guards in place and says why
        broken = {**rebound, "leaky01": GuardBinding(index=str(served.leaky.path / "no-index"))}
        with pytest.raises(Exception, match="guard reload failed"):
            reload_guards(served.cfg, replace(g, guards=broken, generation=2), port=served.port)
        time.sleep(0.5)
    finally:
        stop.set()
        t.join()
    assert after_good > 0 and statuses and set(statuses) == {200}, statuses
    st = ingress.stats.remote().result()
    assert st["pid"] == pid and st["generation"] == 1 and st["reload_error"]["generation"] == 2
    r = served.post("/v1/chat/completions", paste)
    assert r.status_code == 400 and r.json()["error"]["code"] == "content_filter"
    health = requests.get(served.url("/healthz"), timeout=10).json()
    assert health["status"] == "ok" and "reload_error" in health
