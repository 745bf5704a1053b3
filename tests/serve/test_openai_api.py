"""Request validation, response shapes, stop strings, token planning and API keys (no Ray)."""

from __future__ import annotations

import json

import pytest

from serve.config import KeyRing, guards_config, load_api_keys, parse_keys, parse_serve_config
from serve.engines import PromptTooLong, StopStrings, plan_tokens
from serve.openai_api import (
    APIError,
    Chunks,
    parse_chat,
    parse_completion,
    parse_json,
    response,
    usage,
)
from unlearn.errors import ConfigError

MSG = [{"role": "user", "content": "Where was Ada born?"}]


def chat(**kw):
    return parse_chat({"model": "m", "messages": MSG, **kw}, 4096)


@pytest.mark.parametrize(
    "body, param, fragment",
    [
        ({"messages": MSG}, "model", "'model' is required"),
        ({"model": "m"}, "messages", "non-empty list"),
        ({"model": "m", "messages": []}, "messages", "non-empty list"),
        ({"model": "m", "messages": "hi"}, "messages", "non-empty list"),
        ({"model": "m", "messages": ["hi"]}, "messages", "messages[0]' must be an object"),
        ({"model": "m", "messages": [{"content": "x"}]}, "messages", "role' must be one of"),
        ({"model": "m", "messages": [{"role": "user", "content": 3}]}, "messages[0].content", ""),
        ({"model": "m", "messages": [{"role": "user"}]}, "messages[0].content", "is required"),
        (
            {"model": "m", "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
            "messages[0].content",
            "text only",
        ),
        ({"model": "m", "messages": [{"role": "assistant", "content": "x"}]}, "messages", "last"),
        ({"model": "m", "messages": MSG, "max_tokens": -1}, "max_tokens", "at least 1"),
        ({"model": "m", "messages": MSG, "max_tokens": 0}, "max_tokens", "at least 1"),
        ({"model": "m", "messages": MSG, "max_tokens": "9"}, "max_tokens", "integer"),
        ({"model": "m", "messages": MSG, "max_tokens": 10**6}, "max_tokens", "at most 4096"),
        ({"model": "m", "messages": MSG, "temperature": 3}, "temperature", "[0.0, 2.0]"),
        ({"model": "m", "messages": MSG, "top_p": 0}, "top_p", "(0.0, 1.0]"),
        ({"model": "m", "messages": MSG, "stop": [1]}, "stop", "up to 4"),
        ({"model": "m", "messages": MSG, "stop": ["a", "b", "c", "d", "e"]}, "stop", "up to 4"),
        ({"model": "m", "messages": MSG, "seed": 1.5}, "seed", "integer"),
        ({"model": "m", "messages": MSG, "n": 2}, "n", "n=1"),
        ({"model": "m", "messages": MSG, "max_token": 5}, "max_token", "Unrecognized"),
        # nothing in a request can switch the guard off
        ({"model": "m", "messages": MSG, "guard": False}, "guard", "Unrecognized"),
        ({"model": "m", "messages": MSG, "stream_options": {"include_usage": True}}, None, ""),
        ({"model": "m", "messages": MSG, "tools": [{"type": "function"}]}, "tools", ""),
        ({"model": "m", "messages": MSG, "presence_penalty": 0.5}, "presence_penalty", ""),
    ],
)
def test_bad_chat_requests_name_the_field(body, param, fragment):
    with pytest.raises(APIError) as err:
        parse_chat(body, 4096)
    e = err.value
    assert e.status == 400 and e.type == "invalid_request_error"
    if param is not None:
        assert e.param == param
    else:
        assert e.param == "stream_options"
    assert fragment in e.message
    assert set(e.body()["error"]) == {"message", "type", "param", "code"}


def test_chat_request_fields():
    req = chat(
        max_tokens=7,
        temperature=0,
        top_p=0.5,
        stop="\n",
        seed=3,
        stream=True,
        stream_options={"include_usage": True},
        user="u1",
    )
    s = req.sampling
    assert (s.max_tokens, s.temperature, s.top_p, s.stop, s.seed) == (7, 0.0, 0.5, ["\n"], 3)
    assert req.stream and req.include_usage and req.user == "u1"
    assert chat(max_completion_tokens=9).sampling.max_tokens == 9
    parts = parse_chat(
        {
            "model": "m",
            "messages": [
                {"role": "developer", "content": "be brief"},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                },
            ],
        },
        4096,
    )
    assert parts.messages == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "a\nb"},
    ]
    assert parts.guard_content() == parts.messages  # the whole conversation is guarded


def test_completion_request_fields():
    req = parse_completion({"model": "m", "prompt": ["Question: x\nAnswer:"]}, 4096)
    assert req.prompt == "Question: x\nAnswer:" and req.kind == "completion"
    for bad in (
        {"model": "m"},
        {"model": "m", "prompt": [1, 2]},
        {"model": "m", "prompt": ["a", "b"]},
    ):
        with pytest.raises(APIError) as err:
            parse_completion(bad, 4096)
        assert err.value.param == "prompt"
    with pytest.raises(APIError, match="echo"):
        parse_completion({"model": "m", "prompt": "x", "echo": True}, 4096)


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"\xff\xfe", b""])
def test_malformed_json_is_a_400(body):
    with pytest.raises(APIError) as err:
        parse_json(body)
    assert err.value.status == 400 and err.value.code == "invalid_json"


def test_stream_chunks_follow_openai_wire_format():
    req = chat(stream=True, stream_options={"include_usage": True})
    c = Chunks(req, "chatcmpl-1")
    events = [c.first(), c.text("Hi"), c.finish("content_filter"), c.usage(usage(3, 2))]
    objs = [json.loads(e.removeprefix(b"data: ").strip()) for e in events]
    assert all(e.startswith(b"data: ") and e.endswith(b"\n\n") for e in events)
    assert {o["id"] for o in objs} == {"chatcmpl-1"} and len({o["created"] for o in objs}) == 1
    assert {o["object"] for o in objs} == {"chat.completion.chunk"}
    assert objs[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert objs[1]["choices"][0]["delta"] == {"content": "Hi"}
    assert objs[2]["choices"][0]["finish_reason"] == "content_filter"
    assert objs[3]["choices"] == [] and objs[3]["usage"]["total_tokens"] == 5
    assert all(o["usage"] is None for o in objs[:3])
    whole = response(req, "chatcmpl-1", 1, "x", "stop", usage(1, 1))
    assert whole["object"] == "chat.completion" and whole["choices"][0]["message"]["content"] == "x"
    creq = parse_completion({"model": "m", "prompt": "p", "stream": True}, 4096)
    cc = Chunks(creq, "cmpl-1")
    assert cc.first() is None
    assert json.loads(cc.text("x")[6:])["choices"][0]["text"] == "x"
    assert "usage" not in json.loads(cc.text("x")[6:])


def test_stop_strings_cut_before_the_stop_and_across_chunks():
    s = StopStrings(["STOP"])
    out = s.feed("hello ST") + s.feed("OP world")
    assert out == "hello " and s.hit and s.flush() == ""
    s = StopStrings(["\n\n", "END"])
    out = s.feed("a\n") + s.feed("b") + s.feed("c")
    assert out + s.flush() == "a\nbc" and not s.hit
    s = StopStrings([])
    assert s.feed("abc") == "abc" and s.flush() == ""


def test_plan_tokens_reports_the_numbers():
    assert plan_tokens(10, None, 256, 128, 8192) == 118
    assert plan_tokens(10, 5, 256, 128, 8192) == 5
    with pytest.raises(PromptTooLong, match="maximum context length is 128 tokens.*requested 210"):
        plan_tokens(10, 200, 256, 128, 8192)
    with pytest.raises(PromptTooLong, match="at most 50 prompt tokens"):
        plan_tokens(60, 1, 256, 1000, 50)


def test_keys_compare_all_and_never_match_near_misses(tmp_path, monkeypatch):
    ring = KeyRing(["sk-aaaaaaaa1", "sk-bbbbbbbb2"])
    assert ring.match("sk-bbbbbbbb2") and ring.match("sk-aaaaaaaa1")
    assert not ring.match("sk-bbbbbbbb") and not ring.match("") and not ring.match("sk-aaaaaaaa1 ")
    f = tmp_path / "keys"
    f.write_text("# ops keys\nsk-aaaaaaaa1\n\n sk-bbbbbbbb2 \n")
    assert load_api_keys(str(f)) == ["sk-aaaaaaaa1", "sk-bbbbbbbb2"]
    monkeypatch.setenv("UNLEARN_API_KEYS", "sk-cccccccc3, sk-dddddddd4")
    assert load_api_keys(None) == ["sk-cccccccc3", "sk-dddddddd4"]
    monkeypatch.setenv("UNLEARN_API_KEYS", "")
    with pytest.raises(ConfigError, match="no API keys"):
        load_api_keys(None)
    with pytest.raises(ConfigError, match="does not exist"):
        load_api_keys(str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="shorter than 8"):
        parse_keys("abc", "f")


def test_configs_are_strict():
    with pytest.raises(ConfigError, match="must name at least one model"):
        parse_serve_config({})
    with pytest.raises(ConfigError, match="unknown config key limits.max_bodybytes"):
        parse_serve_config({"models": {"a": "/x"}, "limits": {"max_bodybytes": 1}})
    with pytest.raises(ConfigError, match="models.bad id"):
        parse_serve_config({"models": {"bad id": "/x"}})
    with pytest.raises(ConfigError, match="guards.a.index: is required"):
        guards_config({"guards": {"a": {}}})
    with pytest.raises(ConfigError, match="unknown config key guards.a.indx"):
        guards_config({"guards": {"a": {"indx": "/i"}}})
    g = guards_config({"guards": {"a": {"index": "/i", "overrides": {"output.cov": 0.5}}}})
    assert g.guards["a"].index == "/i" and g.guards["a"].overrides == {"output.cov": 0.5}
