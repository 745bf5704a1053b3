"""The guarded OpenAI-compatible ingress: authenticate, limit, guard the input, stream guarded output.

Every request goes the same way, and nothing in a request can change it:

1. ``Authorization: Bearer KEY`` against the key ring (constant time; 401 ``invalid_api_key``).
2. Body size (413), JSON (400), fields (400), model id (404), prompt length (400).
3. The input guard over the whole conversation (system prompt and every turn): a block is HTTP
   400 ``content_filter``; a guard failure is 503 and the model never runs.
4. The model deployment generates (``@serve.multiplexed`` by model id); its text reaches the
   client only through a ``StreamGuard``, which holds back the last few dozen characters. When it
   blocks, generation is cancelled, nothing from the hit on is sent, and the response ends with
   ``finish_reason: "content_filter"``. A guard failure mid-stream ends it with an error event.

Each block is audit-logged (model id, hash of the API key, direction, layer, reason, fact ids,
index version; never text) and counted in the metrics. ``Gateway`` holds this logic without Ray
(unit-testable with any guard and any generator); ``OpenAIIngress`` is the Serve deployment.
"""

import asyncio
import hashlib
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from ray import serve
from starlette.exceptions import HTTPException as StarletteHTTPException

from serve.config import (
    GuardBinding,
    GuardsConfig,
    KeyRing,
    ServeConfig,
    guards_config,
    key_hash,
    load_api_keys,
    unbound_models,
)
from serve.metrics import Metrics
from serve.openai_api import (
    DONE,
    APIError,
    Chunks,
    ParsedRequest,
    invalid,
    new_id,
    parse_chat,
    parse_completion,
    parse_json,
    response,
    sse,
    usage,
)
from unlearn.config import build, load_config
from unlearn.errors import ConfigError

logger = logging.getLogger("ray.serve")
GUARD_CONFIG_FILE = "guard.yaml"  # written into an index directory by `unlearn guard calibrate`
BENCH_PREFIX = "/bench/model-only"

# A stream opener: (model id, payload) -> an async iterator of the model deployment's items with
# a ``cancel()`` (a Serve DeploymentResponseGenerator, or a test double).
Opener = Callable[[str, dict[str, Any]], Any]


def load_guard(binding: GuardBinding, storage_options: dict[str, Any] | None) -> Any:
    """A ``Guard`` for one binding: INDEX, its config (or INDEX/guard.yaml), then the overrides."""
    from unlearn import storage
    from unlearn.guard import Guard, GuardConfig

    path = binding.config
    default = storage.join(binding.index, GUARD_CONFIG_FILE)
    if path is None and storage.exists(default, storage_options):
        path = default
    overrides = [f"{k}={json.dumps(v)}" for k, v in binding.overrides.items()]
    config = load_config(GuardConfig, path, overrides, storage_options=storage_options)
    return Guard.load(binding.index, config, storage_options=storage_options)


def load_guards(cfg: GuardsConfig) -> dict[str, Any]:
    """model id -> Guard; bindings naming the same index and settings share one guard."""
    cache: dict[str, Any] = {}
    out = {}
    for model_id, binding in cfg.guards.items():
        key = json.dumps([binding.index, binding.config, binding.overrides], sort_keys=True)
        if key not in cache:
            try:
                cache[key] = load_guard(binding, cfg.storage_options)
            except Exception as exc:
                raise ConfigError(f"guard for model {model_id!r} ({binding.index}): {exc}") from exc
        out[model_id] = cache[key]
    return out


def check_audit_log(path: str) -> None:
    """Refuse an audit log the replica cannot append to (at start, before any request)."""
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as e:
        raise ConfigError(f"audit_log: cannot append to {path!r}: {e.strerror or e}") from e


class Gateway:
    """The ingress's logic, independent of Ray: one instance per ingress replica."""

    def __init__(self, cfg: ServeConfig, keys: KeyRing, opener: Opener, metrics: Metrics):
        from unlearn.guard import AuditLog

        self.cfg = cfg
        self.models = list(cfg.models)
        self.keys = keys
        self.open = opener
        self.metrics = metrics
        self.guards: dict[str, Any] = {}
        self.guard_versions: dict[str, str] = {}
        self.generation = -1
        self.reloads = 0
        self.reload_error: dict[str, Any] | None = None
        self.created = int(time.time())
        self.audit = AuditLog(
            cfg.audit_log, sink=lambda line: logger.warning("guard_block %s", line)
        )
        self.audit_error: str | None = None
        if cfg.audit_log is not None:
            check_audit_log(cfg.audit_log)

    # -- guards -----------------------------------------------------------------------------------
    def set_guards(self, cfg: GuardsConfig, guards: dict[str, Any]) -> None:
        """Swap in newly loaded guards (requests in flight keep the guard they started with)."""
        self.guards = dict(guards)
        self.guard_versions = {m: g.index.version for m, g in guards.items()}
        self.generation = cfg.generation
        self.reloads += 1
        self.reload_error = None

    def unready(self) -> str | None:
        """Why the gateway cannot serve (a model without a guard), or None."""
        missing = [m for m in self.models if m not in self.guards]
        if missing:
            return f"no guard bound to model(s) {', '.join(missing)}"
        if self.audit_error is not None:
            return f"audit log cannot be written: {self.audit_error}"
        return None

    # -- request pieces ---------------------------------------------------------------------------
    def authenticate(self, request: Request) -> str:
        """The key hash of a valid ``Authorization: Bearer KEY``; 401 otherwise."""
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise APIError(
                401,
                "You didn't provide an API key. Send it as 'Authorization: Bearer KEY'.",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not self.keys.match(key):
            raise APIError(
                401,
                "Incorrect API key provided.",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return key_hash(key)

    async def read_body(self, request: Request) -> bytes:
        """The body, refusing more than ``max_body_bytes`` (413) before reading it all."""
        limit = self.cfg.limits.max_body_bytes
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise APIError(
                413,
                f"The request body is {int(declared)} bytes; the limit is {limit} bytes.",
                code="request_too_large",
            )
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise APIError(
                    413,
                    f"The request body exceeds the limit of {limit} bytes.",
                    code="request_too_large",
                )
        return bytes(body)

    def check_request(self, req: ParsedRequest) -> None:
        """Known model, prompt within the character limit."""
        if req.model not in self.cfg.models:
            raise APIError(
                404,
                f"The model '{req.model}' does not exist. Served models: {', '.join(self.models)}.",
                code="model_not_found",
                param="model",
            )
        n = len(req.text())
        limit = self.cfg.limits.max_prompt_chars
        if n > limit:
            raise invalid(
                f"The prompt is {n} characters; this endpoint accepts at most {limit}.",
                "messages" if req.kind == "chat" else "prompt",
                code="context_length_exceeded",
            )

    def guard_for(self, model: str) -> Any:
        """The model's guard; 503 (fail closed) when none is bound."""
        guard = self.guards.get(model)
        if guard is None:
            raise APIError(
                503,
                "The content filter for this model is not loaded; the request was not processed.",
                code="guard_unavailable",
                type="server_error",
            )
        return guard

    def record_block(
        self, decision: Any, req: ParsedRequest, direction: str, key: str, rid: str, guard: Any
    ) -> None:
        """Audit line (no text) and metrics for one block."""
        self.metrics.blocks.labels(self.metrics.label(req.model), direction, decision.layer).inc()
        try:
            version = guard.index.version
        except Exception:  # noqa: BLE001
            version = None
        record = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "request_id": rid,
            "model": req.model,
            "key": key,
            "user": hashlib.sha256(req.user.encode()).hexdigest()[:16] if req.user else None,
            "route": req.kind,
            "stream": req.stream,
            "direction": direction,
            "layer": decision.layer,
            "reason": decision.reason,
            "fact_ids": list(decision.matched_fact_ids),
            "score": decision.score,
            "index_version": version,
        }
        try:
            self.audit.write(record)
        except Exception as e:  # noqa: BLE001 - the block stands; the failure is never silent
            # Counted, logged, and the replica reports itself unready (/healthz 503) until a
            # later write succeeds, so an operator's health check sees that blocks go unlogged.
            self.metrics.audit_errors.inc()
            self.audit_error = f"{type(e).__name__}: {e}"
            logger.exception("audit log write failed")
        else:
            self.audit_error = None

    async def check_input(self, req: ParsedRequest, key: str, rid: str, session: str) -> Any:
        """The input guard over the whole conversation; 400 content_filter or 503 on failure."""
        guard = self.guard_for(req.model)
        started = time.perf_counter()
        try:
            decision = await off_loop(
                guard, guard.check, req.guard_content(), "input", session=session
            )
        except Exception:  # noqa: BLE001 - Guard.check fails closed itself; so does this
            from unlearn.guard import Decision

            logger.exception("input guard raised")
            decision = Decision(True, 1.0, "error", (), "guard_error")
        self.metrics.guard_seconds.labels("input").observe(time.perf_counter() - started)
        if decision.blocked:
            self.record_block(decision, req, "input", key, rid, guard)
            if decision.reason == "guard_error":
                raise guard_failed()
            raise APIError(
                400,
                "The prompt was refused by the content filter: it restates information this "
                "model has been asked to forget.",
                code="content_filter",
                param="messages" if req.kind == "chat" else "prompt",
            )
        return guard

    # -- the routes -------------------------------------------------------------------------------
    async def list_models(self, request: Request) -> Response:
        """GET /v1/models."""
        self.authenticate(request)
        data = [
            {"id": m, "object": "model", "created": self.created, "owned_by": "unlearn"}
            for m in self.models
        ]
        return JSONResponse({"object": "list", "data": data})

    async def complete(self, request: Request, kind: str, guarded: bool = True) -> Response:
        """POST /v1/chat/completions (kind "chat") or /v1/completions ("completion")."""
        started = time.perf_counter()
        key = self.authenticate(request)
        data = parse_json(await self.read_body(request))
        limit = self.cfg.limits.max_tokens_limit
        req = parse_chat(data, limit) if kind == "chat" else parse_completion(data, limit)
        try:
            return await self._complete(req, key, kind, guarded, started)
        except APIError as exc:
            exc.model = self.metrics.label(req.model)  # the metrics label of the refusal
            raise

    async def _complete(
        self, req: ParsedRequest, key: str, kind: str, guarded: bool, started: float
    ) -> Response:
        self.check_request(req)
        rid = new_id(kind)
        session = f"{key}:{req.user}" if req.user else key
        guard = await self.check_input(req, key, rid, session) if guarded else None
        out_guard = None
        if guard is not None:
            from unlearn.guard import StreamGuard

            out_guard = StreamGuard(guard, context=req.guard_content(), session=session)
            if out_guard.blocked:  # could not even start: fail closed
                self.record_block(out_guard.decision, req, "output", key, rid, guard)
                raise guard_failed()
        stream = self.open(req.model, req.payload(rid))
        try:
            first = await anext(stream)
        except Exception:
            cancel(stream)
            logger.exception("model %s failed before generating", req.model)
            raise APIError(
                503,
                f"The model '{req.model}' is unavailable; see the server log.",
                code="model_unavailable",
                type="server_error",
            ) from None
        if first["type"] == "error":
            cancel(stream)
            raise APIError(
                first["status"], first["message"], code=first["code"], param=first["param"]
            )
        run = _Run(self, req, rid, key, stream, out_guard, guard, first["prompt_tokens"], started)
        if req.stream:
            return StreamingResponse(
                run.sse(),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        return await run.whole()


async def off_loop(guard: Any, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run a guard call in a thread when it may take long (the embedding layer: tens of ms), else
    inline: a lexical check takes a fraction of a millisecond, less than a thread hop costs."""
    if getattr(guard, "semantic", True):
        return await asyncio.to_thread(fn, *args, **kwargs)
    return fn(*args, **kwargs)


def guard_failed() -> APIError:
    """503 when the guard cannot decide (fail closed: no model text is released)."""
    return APIError(
        503,
        "The content filter failed on this request; no output was released. Retry later.",
        code="guard_unavailable",
        type="server_error",
    )


def cancel(stream: Any) -> None:
    """Cancel the model call (stops generation on the model replica)."""
    try:
        stream.cancel()
    except Exception:  # noqa: BLE001 - best effort
        pass


class _Run:
    """One generation on its way to the client, through the output guard."""

    def __init__(
        self,
        gw: Gateway,
        req: ParsedRequest,
        rid: str,
        key: str,
        stream: Any,
        out_guard: Any,
        guard: Any,
        prompt_tokens: int,
        started: float,
    ):
        self.gw, self.req, self.rid, self.key = gw, req, rid, key
        self.stream, self.sg, self.guard = stream, out_guard, guard
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = 0
        self.started = started
        self.guard_s = 0.0
        self.finish = "stop"
        self.error: APIError | None = None

    def _feed(self, text: str) -> str:
        if self.sg is None:
            return text
        t = time.perf_counter()
        out = self.sg.feed(text) if text else ""
        self.guard_s += time.perf_counter() - t
        return out

    async def _close(self) -> str:
        if self.sg is None:
            return ""
        t = time.perf_counter()
        out = await off_loop(self.guard, self.sg.close)
        self.guard_s += time.perf_counter() - t
        return out

    def _blocked(self) -> bool:
        """After the output guard fired: record it, stop the model, set the outcome."""
        if self.sg is None or not self.sg.blocked:
            return False
        decision = self.sg.decision
        self.gw.record_block(decision, self.req, "output", self.key, self.rid, self.guard)
        cancel(self.stream)
        if decision.reason == "guard_error":
            self.error = guard_failed()
        self.finish = "content_filter"
        return True

    async def pieces(self) -> AsyncIterator[str]:
        """Text as the guard releases it; sets ``finish`` / ``error`` at the end."""
        try:
            async for item in self.stream:
                if item["type"] == "delta":
                    self.completion_tokens += item["tokens"]
                    out = self._feed(item["text"])
                    if out:
                        yield out
                    if self._blocked():
                        return
                elif item["type"] == "end":
                    self.completion_tokens = item["completion_tokens"]
                    self.finish = item["finish_reason"]
                    out = await self._close()
                    if self._blocked():
                        return
                    if out:
                        yield out
                    return
            raise RuntimeError("the model stream ended without an end item")
        except (APIError, asyncio.CancelledError, GeneratorExit):
            cancel(self.stream)
            raise
        except Exception:
            cancel(self.stream)
            logger.exception("generation failed for %s", self.rid)
            self.error = APIError(
                503,
                "Generation failed on the model replica; see the server log.",
                code="model_unavailable",
                type="server_error",
            )

    def _done(self, status: int) -> None:
        m, label = self.gw.metrics, self.gw.metrics.label(self.req.model)
        route = self.req.kind if self.sg is not None else "bench"
        m.requests.labels(route, label, str(status)).inc()
        m.latency.labels(route, label, str(self.req.stream).lower()).observe(
            time.perf_counter() - self.started
        )
        m.tokens.labels(label, "prompt").inc(self.prompt_tokens)
        m.tokens.labels(label, "completion").inc(self.completion_tokens)
        if self.sg is not None:
            m.guard_seconds.labels("output").observe(self.guard_s)

    async def whole(self) -> Response:
        """A non-streamed response: all released text, or 503 with none on a guard failure."""
        parts = [p async for p in self.pieces()]
        if self.error is not None:
            self._done(self.error.status)
            raise self.error
        body = response(
            self.req,
            self.rid,
            int(time.time()),
            "".join(parts),
            self.finish,
            usage(self.prompt_tokens, self.completion_tokens),
        )
        self._done(200)
        return JSONResponse(body)

    async def sse(self) -> AsyncIterator[bytes]:
        """Server-sent events in OpenAI's chunk format, ending with ``data: [DONE]``."""
        chunks = Chunks(self.req, self.rid)
        status = 200
        try:
            first = chunks.first()
            if first is not None:
                yield first
            seen_text = False
            async for text in self.pieces():
                if not seen_text:
                    seen_text = True
                    self.gw.metrics.first_token.labels(
                        self.gw.metrics.label(self.req.model)
                    ).observe(time.perf_counter() - self.started)
                yield chunks.text(text)
            if self.error is not None:
                status = self.error.status
                yield sse(self.error.body())
                yield DONE
                return
            yield chunks.finish(self.finish)
            if self.req.include_usage:
                yield chunks.usage(usage(self.prompt_tokens, self.completion_tokens))
            yield DONE
        except (asyncio.CancelledError, GeneratorExit):
            status = 499  # the client went away; generation was cancelled
            raise
        finally:
            self._done(status)


# -- the Serve deployment ---------------------------------------------------------------------------
api = FastAPI(title="unlearn", docs_url=None, redoc_url=None, openapi_url=None)


@api.exception_handler(APIError)
async def _api_error(request: Request, exc: APIError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


@api.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    err = APIError(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}")
    return JSONResponse(err.body(), status_code=exc.status_code)


@serve.deployment(name="OpenAIIngress", max_ongoing_requests=64)
@serve.ingress(api)
class OpenAIIngress:
    """FastAPI ingress over the model deployment; guards reload in place via user_config."""

    def __init__(self, config: dict[str, Any], model: Any):
        cfg = build(ServeConfig, config)
        self.cfg = cfg
        self.model = model
        self.metrics = Metrics(list(cfg.models))
        if cfg.metrics_port is not None:
            rank = 0
            try:
                rank = int(serve.get_replica_context().rank.local_rank)
            except Exception:  # noqa: BLE001 - outside a replica (never in production)
                rank = 0
            self.metrics.serve(cfg.metrics_port + rank)
        self.gateway = Gateway(
            cfg, KeyRing(load_api_keys(cfg.api_keys_file)), self._open, self.metrics
        )
        if cfg.bench_model_only_route:
            logger.warning(
                "bench_model_only_route is on: %s/v1/chat/completions serves models WITHOUT the "
                "guard (benchmarks only)",
                BENCH_PREFIX,
            )

    def _open(self, model_id: str, payload: dict[str, Any]) -> Any:
        return self.model.options(stream=True, multiplexed_model_id=model_id).generate.remote(
            payload
        )

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Load the guards named in user_config (in a thread), then swap them in.

        The first load must succeed (the replica does not start without its guards). A later
        reload that fails keeps the guards in place, logs why and reports it in ``stats`` and
        ``/healthz``: a bad index path never leaves a model unguarded or the endpoint down.
        """
        try:
            cfg = guards_config(user_config)
            missing = unbound_models(self.gateway.models, cfg)
            if missing:
                raise ConfigError(
                    f"OpenAIIngress user_config: no guard for model(s) {', '.join(missing)}; "
                    "every served model needs guards.<id>.index"
                )
            guards = await asyncio.to_thread(load_guards, cfg)
        except Exception as exc:
            if not self.gateway.guards:
                raise
            generation = (user_config or {}).get("generation")
            self.gateway.reload_error = {"generation": generation, "error": str(exc)}
            logger.error("guard reload failed; still serving the previous guards: %s", exc)
            return
        self.gateway.set_guards(cfg, guards)
        logger.info(
            "guards loaded (generation %d): %s", cfg.generation, self.gateway.guard_versions
        )

    async def _count(self, route: str, coro: Any) -> Response:
        try:
            return await coro
        except APIError as exc:
            model = getattr(exc, "model", "-")
            self.metrics.requests.labels(route, model, str(exc.status)).inc()
            raise

    @api.get("/healthz")
    async def healthz(self) -> Response:
        """200 when every model has its guard, else 503 (no authentication, no details)."""
        if self.gateway.unready():  # the details (model ids) are in the log and stats
            return JSONResponse(
                {"status": "unavailable", "reason": "a model has no guard loaded"}, status_code=503
            )
        body: dict[str, Any] = {"status": "ok", "models": len(self.gateway.models)}
        if self.gateway.reload_error is not None:
            body["reload_error"] = "the last guard reload failed; serving the previous guards"
        return JSONResponse(body)

    @api.get("/v1/models")
    async def list_models(self, request: Request) -> Response:
        """The served model ids."""
        return await self._count("models", self.gateway.list_models(request))

    @api.post("/v1/chat/completions")
    async def chat(self, request: Request) -> Response:
        """Chat completions, guarded."""
        return await self._count("chat", self.gateway.complete(request, "chat"))

    @api.post("/v1/completions")
    async def completions(self, request: Request) -> Response:
        """Text completions, guarded."""
        return await self._count("completion", self.gateway.complete(request, "completion"))

    @api.post(BENCH_PREFIX + "/v1/chat/completions")
    async def bench_chat(self, request: Request) -> Response:
        """The model without the guard: only with ``bench_model_only_route`` (benchmarks)."""
        if not self.cfg.bench_model_only_route:
            raise APIError(404, f"POST {request.url.path}: Not Found")
        return await self._count("bench", self.gateway.complete(request, "chat", guarded=False))

    async def stats(self) -> dict[str, Any]:
        """State of this replica (tests, operators): pid, guard versions, reloads, metrics port."""
        return {
            "unready": self.gateway.unready(),
            "keys": len(self.gateway.keys),
            "pid": os.getpid(),
            "guards": dict(self.gateway.guard_versions),
            "generation": self.gateway.generation,
            "reloads": self.gateway.reloads,
            "reload_error": self.gateway.reload_error,
            "metrics_port": self.metrics.port,
        }
