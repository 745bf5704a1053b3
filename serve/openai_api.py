"""The OpenAI HTTP API's shapes: request validation, response and stream-chunk objects, errors.

Requests are validated here, before any guard or model work, into a ``ParsedRequest``; every refusal
is an ``APIError`` rendered as OpenAI's error object (``{"error": {"message", "type", "param",
"code"}}``) with the HTTP status OpenAI uses. Unknown request fields are refused (as OpenAI does)
so a typo such as ``max_token`` is not silently ignored. Sampling fields: ``max_tokens`` (or
``max_completion_tokens``), ``temperature``, ``top_p``, ``stop``, ``seed``; vLLM's extensions
``ignore_eos`` and ``min_tokens`` are accepted too (benchmarks use them for fixed lengths).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

ROLES = ("system", "developer", "user", "assistant")
FINISH_REASONS = ("stop", "length", "content_filter")
# fields accepted and ignored: they do not change what is generated
IGNORED = {
    "user",
    "metadata",
    "store",
    "service_tier",
    "prompt_cache_key",
    "safety_identifier",
    "parallel_tool_calls",
}
COMMON = {
    "model",
    "stream",
    "stream_options",
    "max_tokens",
    "temperature",
    "top_p",
    "stop",
    "seed",
    "n",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "ignore_eos",
    "min_tokens",
}
CHAT_FIELDS = (
    COMMON
    | IGNORED
    | {
        "messages",
        "max_completion_tokens",
        "top_logprobs",
        "tools",
        "tool_choice",
        "functions",
        "function_call",
        "response_format",
        "modalities",
    }
)
COMPLETION_FIELDS = COMMON | IGNORED | {"prompt", "echo", "suffix", "best_of"}


class APIError(Exception):
    """A refusal rendered as OpenAI's error object with an HTTP status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        type: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.type = type
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """``{"error": {...}}`` as OpenAI returns it."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


def invalid(message: str, param: str | None = None, code: str | None = None) -> APIError:
    """A 400 ``invalid_request_error``."""
    return APIError(400, message, param=param, code=code)


@dataclass
class Sampling:
    """What the model is asked to generate."""

    max_tokens: int | None = None  # None: the route's default, capped by the context left
    temperature: float = 1.0  # 0: greedy
    top_p: float = 1.0
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    ignore_eos: bool = False
    min_tokens: int = 0


@dataclass
class ParsedRequest:
    """A validated chat or completions request."""

    kind: str  # "chat" | "completion"
    model: str
    messages: list[dict[str, str]] | None  # chat: [{"role", "content"}] (content as text)
    prompt: str | None  # completion
    sampling: Sampling
    stream: bool
    include_usage: bool
    user: str | None

    def text(self) -> str:
        """The whole prompt or conversation as one text (what the length limit counts)."""
        if self.messages is not None:
            return "\n\n".join(m["content"] for m in self.messages)
        return self.prompt or ""

    def guard_content(self) -> Any:
        """What the input guard checks: every message of the conversation, or the prompt."""
        return self.messages if self.messages is not None else self.prompt

    def payload(self, request_id: str) -> dict[str, Any]:
        """What the model deployment receives."""
        return {
            "kind": self.kind,
            "messages": self.messages,
            "prompt": self.prompt,
            "sampling": asdict(self.sampling),
            "request_id": request_id,
        }


def parse_json(body: bytes) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 saying why not."""
    try:
        data = json.loads(body)
    except UnicodeDecodeError:
        raise invalid("The request body is not UTF-8 text.", code="invalid_json") from None
    except json.JSONDecodeError as exc:
        raise invalid(
            f"We could not parse the JSON body of your request ({exc.msg} at line {exc.lineno} "
            f"column {exc.colno}). The body must be a JSON object.",
            code="invalid_json",
        ) from None
    if not isinstance(data, dict):
        raise invalid(
            f"The request body must be a JSON object, got {type(data).__name__}.",
            code="invalid_json",
        )
    return data


def _number(data: dict, key: str, lo: float, hi: float, default: float, lo_open: bool = False):
    value = data.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(f"'{key}' must be a number, got {json.dumps(value)}.", key)
    if value > hi or value < lo or (lo_open and value == lo):
        bound = f"({lo}, {hi}]" if lo_open else f"[{lo}, {hi}]"
        raise invalid(f"'{key}' must be in {bound}, got {value}.", key)
    return float(value)


def _int(data: dict, key: str, lo: int, hi: int | None = None) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"'{key}' must be an integer, got {json.dumps(value)}.", key)
    if value < lo:
        raise invalid(f"'{key}' must be at least {lo}, got {value}.", key)
    if hi is not None and value > hi:
        raise invalid(f"'{key}' must be at most {hi}, got {value}.", key)
    return value


def _sampling(data: dict[str, Any], max_tokens_limit: int) -> Sampling:
    max_tokens = _int(data, "max_tokens", 1, max_tokens_limit)
    mct = _int(data, "max_completion_tokens", 1, max_tokens_limit)
    if max_tokens is not None and mct is not None and max_tokens != mct:
        raise invalid("Give 'max_tokens' or 'max_completion_tokens', not both.", "max_tokens")
    stop = data.get("stop")
    if stop is None:
        stops: list[str] = []
    elif isinstance(stop, str):
        stops = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        stops = list(stop)
    else:
        raise invalid("'stop' must be a string or a list of up to 4 strings.", "stop")
    if len(stops) > 4 or any(not s for s in stops):
        raise invalid("'stop' takes up to 4 non-empty strings.", "stop")
    seed = data.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise invalid(f"'seed' must be an integer, got {json.dumps(seed)}.", "seed")
    ignore_eos = data.get("ignore_eos", False)
    if not isinstance(ignore_eos, bool):
        raise invalid("'ignore_eos' must be true or false.", "ignore_eos")
    return Sampling(
        max_tokens=max_tokens if max_tokens is not None else mct,
        temperature=_number(data, "temperature", 0.0, 2.0, 1.0),
        top_p=_number(data, "top_p", 0.0, 1.0, 1.0, lo_open=True),
        seed=seed,
        stop=stops,
        ignore_eos=ignore_eos,
        min_tokens=_int(data, "min_tokens", 0, max_tokens_limit) or 0,
    )


def _refuse_unsupported(data: dict[str, Any], known: set[str]) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise invalid(f"Unrecognized request argument supplied: {', '.join(unknown)}.", unknown[0])
    if data.get("n", 1) != 1:
        raise invalid("Only n=1 is supported.", "n")
    for key in ("presence_penalty", "frequency_penalty"):
        if data.get(key) not in (None, 0, 0.0):
            raise invalid(f"'{key}' is not supported (only 0).", key)
    if data.get("logit_bias"):
        raise invalid("'logit_bias' is not supported.", "logit_bias")
    if data.get("logprobs") not in (None, False) or data.get("top_logprobs") is not None:
        raise invalid("'logprobs' is not supported.", "logprobs")
    for key in ("tools", "functions"):
        if data.get(key):
            raise invalid(f"'{key}' is not supported by this endpoint.", key)
    for key in ("tool_choice", "function_call"):
        if data.get(key) not in (None, "none"):
            raise invalid(f"'{key}' is not supported by this endpoint.", key)
    fmt = data.get("response_format")
    if fmt is not None and fmt != {"type": "text"}:
        raise invalid("Only response_format {'type': 'text'} is supported.", "response_format")
    if data.get("echo"):
        raise invalid("'echo' is not supported.", "echo")
    if data.get("suffix"):
        raise invalid("'suffix' is not supported.", "suffix")
    if data.get("best_of", 1) != 1:
        raise invalid("Only best_of=1 is supported.", "best_of")


def _stream_flags(data: dict[str, Any]) -> tuple[bool, bool]:
    stream = data.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise invalid("'stream' must be true or false.", "stream")
    opts = data.get("stream_options")
    include_usage = False
    if opts is not None:
        if not stream:
            raise invalid(
                "'stream_options' is only allowed when 'stream' is true.", "stream_options"
            )
        if not isinstance(opts, dict) or set(opts) - {"include_usage", "include_obfuscation"}:
            raise invalid("'stream_options' must be {'include_usage': bool}.", "stream_options")
        include_usage = opts.get("include_usage", False)
        if not isinstance(include_usage, bool):
            raise invalid("'stream_options.include_usage' must be true or false.", "stream_options")
    return stream, include_usage


def _model(data: dict[str, Any]) -> str:
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("'model' is required: one of the ids GET /v1/models lists.", "model")
    return model


def _user(data: dict[str, Any]) -> str | None:
    user = data.get("user") or data.get("safety_identifier")
    if user is not None and not isinstance(user, str):
        raise invalid("'user' must be a string.", "user")
    return user


def _content(msg: dict[str, Any], i: int) -> str:
    """A message's content as text (string, or a list of text parts)."""
    content = msg.get("content")
    where = f"messages[{i}].content"
    if content is None:
        if msg["role"] == "assistant":
            return ""
        raise invalid(f"'{where}' is required for a {msg['role']} message.", where)
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text":
                raise invalid(
                    f"'{where}[{j}]' must be a text part {{'type': 'text', 'text': ...}}; "
                    "this endpoint takes text only.",
                    where,
                )
            if not isinstance(part.get("text"), str):
                raise invalid(f"'{where}[{j}].text' must be a string.", where)
            parts.append(part["text"])
        return "\n".join(parts)
    raise invalid(f"'{where}' must be a string or a list of text parts.", where)


def parse_chat(data: dict[str, Any], max_tokens_limit: int) -> ParsedRequest:
    """Validate a ``POST /v1/chat/completions`` body."""
    _refuse_unsupported(data, CHAT_FIELDS)
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid(
            "'messages' must be a non-empty list of {'role': ..., 'content': ...} objects.",
            "messages",
        )
    out = []
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict):
            raise invalid(
                f"'messages[{i}]' must be an object with 'role' and 'content', got "
                f"{type(msg).__name__}.",
                "messages",
            )
        role = msg.get("role")
        if role not in ROLES:
            raise invalid(
                f"'messages[{i}].role' must be one of {', '.join(ROLES)}, got {json.dumps(role)}.",
                "messages",
            )
        extra = sorted(set(msg) - {"role", "content", "name"})
        if extra:
            raise invalid(
                f"'messages[{i}]' has unsupported fields: {', '.join(extra)}.", "messages"
            )
        out.append({"role": "system" if role == "developer" else role, "content": _content(msg, i)})
    if out[-1]["role"] == "assistant":
        raise invalid("The last message must not be the assistant's.", "messages")
    stream, include_usage = _stream_flags(data)
    return ParsedRequest(
        "chat",
        _model(data),
        out,
        None,
        _sampling(data, max_tokens_limit),
        stream,
        include_usage,
        _user(data),
    )


def parse_completion(data: dict[str, Any], max_tokens_limit: int) -> ParsedRequest:
    """Validate a ``POST /v1/completions`` body."""
    _refuse_unsupported(data, COMPLETION_FIELDS)
    if "max_completion_tokens" in data:
        raise invalid("Use 'max_tokens' with /v1/completions.", "max_completion_tokens")
    prompt = data.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise invalid(
            "'prompt' must be a string (one prompt per request; token arrays are not accepted).",
            "prompt",
        )
    stream, include_usage = _stream_flags(data)
    return ParsedRequest(
        "completion",
        _model(data),
        None,
        prompt,
        _sampling(data, max_tokens_limit),
        stream,
        include_usage,
        _user(data),
    )


# -- responses ----------------------------------------------------------------------------------
def new_id(kind: str) -> str:
    """``chatcmpl-...`` / ``cmpl-...``."""
    return ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex[:24]


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """OpenAI's usage object."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def response(
    req: ParsedRequest, rid: str, created: int, text: str, finish: str, use: dict[str, int]
) -> dict[str, Any]:
    """A whole (non-streamed) chat.completion or text_completion object."""
    if req.kind == "chat":
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": None},
            "logprobs": None,
            "finish_reason": finish,
        }
        obj = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        obj = "text_completion"
    return {
        "id": rid,
        "object": obj,
        "created": created,
        "model": req.model,
        "system_fingerprint": None,
        "choices": [choice],
        "usage": use,
    }


class Chunks:
    """The chunks of one streamed response: same id and created on every chunk."""

    def __init__(self, req: ParsedRequest, rid: str):
        self.req = req
        self.rid = rid
        self.created = int(time.time())
        self.obj = "chat.completion.chunk" if req.kind == "chat" else "text_completion"

    def _chunk(self, choices: list[dict[str, Any]], use: Any = None) -> bytes:
        obj: dict[str, Any] = {
            "id": self.rid,
            "object": self.obj,
            "created": self.created,
            "model": self.req.model,
            "system_fingerprint": None,
            "choices": choices,
        }
        if self.req.include_usage:
            obj["usage"] = use
        return sse(obj)

    def _choice(self, text: str | None, finish: str | None, role: bool = False) -> dict:
        if self.req.kind == "chat":
            delta: dict[str, Any] = {}
            if role:
                delta["role"] = "assistant"
            if text is not None:
                delta["content"] = text
            return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}

    def first(self) -> bytes | None:
        """Chat streams open with the assistant role (an empty content delta)."""
        if self.req.kind != "chat":
            return None
        return self._chunk([self._choice("", None, role=True)])

    def text(self, text: str) -> bytes:
        """A chunk carrying ``text``."""
        return self._chunk([self._choice(text, None)])

    def finish(self, reason: str) -> bytes:
        """The chunk with the finish reason and no content."""
        return self._chunk([self._choice(None if self.req.kind == "chat" else "", reason)])

    def usage(self, use: dict[str, int]) -> bytes:
        """The extra usage chunk (``choices: []``) of ``stream_options.include_usage``."""
        return self._chunk([], use)


def sse(obj: Any) -> bytes:
    """One server-sent event ``data: <json>``."""
    return b"data: " + json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n\n"


DONE = b"data: [DONE]\n\n"
