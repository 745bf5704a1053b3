"""The model deployment: several unlearned variants share replicas through ``@serve.multiplexed``.

The ingress calls ``generate`` with ``handle.options(stream=True, multiplexed_model_id=ID)``;
Serve routes the call to a replica that already holds model ID when it can, and each replica
keeps at most ``max_models_per_replica`` engines loaded (least recently used evicted).
``generate`` is an async generator of plain dicts:

* first ``{"type": "start", "prompt_tokens": N, "max_tokens": M}``, or a single
  ``{"type": "error", "status": 400, "code": ..., "message": ...}`` (prompt too long),
* then ``{"type": "delta", "text": ..., "tokens": k}``,
* last ``{"type": "end", "finish_reason": "stop" | "length", "completion_tokens": n}``.

When the caller cancels (client disconnect, guard block), the generator is cancelled and the
engine stops generating. Stop strings are applied here, the same for every engine.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

from ray import serve

from serve.config import EngineOptions, Limits, ServeConfig
from serve.engines import PromptTooLong, StopStrings, load_engine, plan_tokens
from unlearn.config import build

logger = logging.getLogger("ray.serve")


@serve.deployment(name="UnlearnModel", max_ongoing_requests=16)
class ModelServer:
    """Loads model directories by id (LRU-cached per replica) and streams generations."""

    def __init__(self, config: dict[str, Any]):
        cfg: ServeConfig = build(ServeConfig, config)
        self.paths = dict(cfg.models)
        self.kind = cfg.engine
        self.options: EngineOptions = cfg.engine_options
        self.limits: Limits = cfg.limits
        if self.kind == "vllm":
            from serve.engines import import_vllm

            import_vllm()  # fail at start-up, naming the extra, not at the first request
        if self.options.torch_threads:
            import torch

            torch.set_num_threads(self.options.torch_threads)
        self.active = 0
        self.cancelled = 0
        self.completed = 0
        self.tokens = 0
        self.loaded: list[str] = []

        async def load(model_id: str) -> Any:
            return await self._load(model_id)

        # wired at init so the cache size comes from the config (Serve detects it at runtime)
        self.get_engine = serve.multiplexed(max_num_models_per_replica=cfg.max_models_per_replica)(
            load
        )

    async def _load(self, model_id: str) -> Any:
        if model_id not in self.paths:
            raise KeyError(f"model {model_id!r} is not served here")
        path = self.paths[model_id]
        if self.kind == "vllm":
            # vLLM's async engine binds to the event loop it is created on: build it here (the
            # replica's loop waits while the model loads)
            engine = load_engine(self.kind, path, self.options)
        else:
            engine = await asyncio.to_thread(load_engine, self.kind, path, self.options)
        logger.info("loaded model %s from %s in %.1fs", model_id, path, engine.load_seconds)
        self.loaded = [*[m for m in self.loaded if m != model_id], model_id]
        return _Loaded(model_id, engine, self)

    async def generate(self, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Stream one request's generation (see the module docstring for the items)."""
        loaded = await self.get_engine(serve.get_multiplexed_model_id())
        loaded.inflight += 1  # an eviction now closes the engine only after this request
        inner = self._generate(loaded.engine, payload)
        try:
            async for item in inner:
                yield item
        finally:
            await inner.aclose()  # runs the engine's cleanup now, not at garbage collection
            loaded.release()

    async def _generate(self, engine: Any, payload: dict[str, Any]) -> AsyncIterator[dict]:
        sampling = payload["sampling"]
        ids = await asyncio.to_thread(engine.prompter.encode, payload)
        default = (
            self.limits.default_max_tokens
            if payload["kind"] == "chat"
            else self.limits.default_completion_tokens
        )
        try:
            max_tokens = plan_tokens(
                len(ids),
                sampling["max_tokens"],
                default,
                engine.context,
                self.limits.max_prompt_tokens,
            )
        except PromptTooLong as exc:
            yield {
                "type": "error",
                "status": 400,
                "code": "context_length_exceeded",
                "param": "messages" if payload["kind"] == "chat" else "prompt",
                "message": exc.message,
            }
            return
        yield {"type": "start", "prompt_tokens": len(ids), "max_tokens": max_tokens}
        stops = StopStrings(sampling["stop"])
        n = 0
        finish = "stop"
        self.active += 1
        try:
            gen = engine.stream(ids, sampling, max_tokens, payload["request_id"])
            try:
                async for delta in gen:
                    n += delta.tokens
                    text = stops.feed(delta.text)
                    if delta.finish is not None:
                        text += stops.flush()
                        finish = delta.finish
                    if stops.hit:
                        finish = "stop"
                    if text or delta.tokens:
                        yield {"type": "delta", "text": text, "tokens": delta.tokens}
                    if stops.hit or delta.finish is not None:
                        break
            finally:
                await gen.aclose()  # stops the engine when we leave early
            self.completed += 1
            yield {"type": "end", "finish_reason": finish, "completion_tokens": n}
        except (asyncio.CancelledError, GeneratorExit):
            self.cancelled += 1
            raise
        finally:
            self.tokens += n
            self.active -= 1

    async def stats(self) -> dict[str, Any]:
        """Counters of this replica (tests, operators): active/cancelled generations, tokens."""
        return {
            "pid": os.getpid(),
            "engine": self.kind,
            "active": self.active,
            "cancelled": self.cancelled,
            "completed": self.completed,
            "tokens": self.tokens,
            "loaded": list(self.loaded),
        }

    async def check_health(self) -> None:
        """Serve's health check: nothing to probe beyond the replica being responsive."""


class _Loaded:
    """A loaded engine in the multiplex cache. Serve calls ``__del__`` when its LRU evicts it;
    the engine is closed once the requests still generating with it have finished."""

    def __init__(self, model_id: str, engine: Any, owner: ModelServer):
        self.model_id = model_id
        self.engine = engine
        self.owner = owner
        self.inflight = 0
        self.evicted = False
        self.closed = False

    def release(self) -> None:
        """One request finished; close the engine if it was evicted meanwhile."""
        self.inflight -= 1
        if self.evicted and self.inflight == 0:
            self._close()

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.engine.close()
        except Exception:  # noqa: BLE001 - eviction must not fail the replica
            logger.exception("closing model %s failed", self.model_id)

    def __del__(self) -> None:
        if getattr(self, "closed", True):
            return
        self.evicted = True
        self.owner.loaded = [m for m in self.owner.loaded if m != self.model_id]
        if self.inflight == 0:
            self._close()
