"""What the serving application is built from: the app's arguments and the ingress's user_config.

Two levels, as Ray Serve separates them:

* ``ServeConfig`` (the ``args`` of ``serve.app:app_builder`` in a Serve config file, or what
  ``unlearn serve`` assembles from its flags): the models (id -> Hugging Face directory, local or
  ``s3://``), the engine, API keys, limits, metrics. Changing it rebuilds the application.
* ``GuardsConfig`` (the ``user_config`` of the ``OpenAIIngress`` deployment): which guard index
  each model id is bound to and its thresholds. Changing it reloads the guards in place
  (``reconfigure``): no restart, in-flight requests finish on the guard they started with.

Both are strict dataclasses (``unlearn.config.build``): an unknown key or impossible value is
refused with the dotted key named, before any replica starts.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from unlearn.config import build, require
from unlearn.errors import ConfigError

ENGINES = ("transformers", "vllm")
API_KEYS_ENV = "UNLEARN_API_KEYS"
MODEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}")


@dataclass
class Limits:
    """Request limits, checked before any guard or model work."""

    # bytes of a request body (413 above)
    max_body_bytes: int = 1 << 20
    # characters of the whole prompt or conversation (400 above); the guard scans all of it
    max_prompt_chars: int = 32000
    # tokens of the prompt (400 above); the model's context length also applies
    max_prompt_tokens: int = 8192
    # the largest max_tokens a request may ask for (400 above)
    max_tokens_limit: int = 4096
    # max_tokens of a chat request that gives none (capped by the context left)
    default_max_tokens: int = 256
    # max_tokens of a completions request that gives none (OpenAI's default)
    default_completion_tokens: int = 16

    def check(self) -> None:
        """Every limit is positive."""
        for name in (
            "max_body_bytes",
            "max_prompt_chars",
            "max_prompt_tokens",
            "max_tokens_limit",
            "default_max_tokens",
            "default_completion_tokens",
        ):
            require(getattr(self, name) >= 1, name, f"must be >= 1, got {getattr(self, name)}")


@dataclass
class EngineOptions:
    """How models are loaded and run."""

    # "auto": cuda when available, else cpu (transformers engine)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # torch dtype name ("float32", "bfloat16", ...); None keeps the checkpoint's
    dtype: str | None = None
    # torch intra-op threads in a model replica; 0 leaves torch's default
    torch_threads: int = 0
    # generations running at once in one replica (transformers engine; vLLM batches itself)
    max_concurrent: int = 4
    # vLLM only: fraction of GPU memory per loaded model, and its context length (None: model's)
    gpu_memory_utilization: float = 0.85
    max_model_len: int | None = None
    # filesystem options for s3:// model directories (endpoint_url, key, secret, ...)
    storage_options: dict[str, Any] | None = None

    def check(self) -> None:
        """Sane values."""
        require(self.torch_threads >= 0, "torch_threads", "must not be negative")
        require(self.max_concurrent >= 1, "max_concurrent", "must be >= 1")
        require(
            0.0 < self.gpu_memory_utilization <= 1.0,
            "gpu_memory_utilization",
            f"must be in (0, 1], got {self.gpu_memory_utilization}",
        )


@dataclass
class ServeConfig:
    """The serving application (``args`` of ``serve.app:app_builder``)."""

    # model id (what clients pass as "model") -> model directory (local or s3://)
    models: dict[str, str] = field(default_factory=dict)
    engine: Literal["transformers", "vllm"] = "transformers"
    engine_options: EngineOptions = field(default_factory=EngineOptions)
    # one API key per line; else the UNLEARN_API_KEYS environment variable (comma-separated)
    api_keys_file: str | None = None
    limits: Limits = field(default_factory=Limits)
    # Prometheus /metrics on 127.0.0.1 at this port (+ the replica's rank); None: off
    metrics_port: int | None = 8001
    # JSON line per guard block (no text; model id, key hash); None: the replica's log only
    audit_log: str | None = None
    # models kept loaded per model replica (LRU beyond)
    max_models_per_replica: int = 3
    model_replicas: int = 1
    ingress_replicas: int = 1
    # CPUs (GPUs) reserved per model replica, CPUs per ingress replica
    model_num_cpus: float = 1.0
    model_num_gpus: float = 0.0
    ingress_num_cpus: float = 1.0
    # benchmarks only: also serve /bench/model-only/v1/..., the same models WITHOUT the guard
    bench_model_only_route: bool = False

    def check(self) -> None:
        """At least one model, valid ids, positive counts."""
        require(bool(self.models), "models", "must name at least one model (ID: PATH)")
        for mid, path in self.models.items():
            require(
                bool(MODEL_ID.fullmatch(mid)),
                f"models.{mid}",
                "a model id is 1-128 letters, digits and ._:/- (starting with a letter or digit)",
            )
            require(
                isinstance(path, str) and bool(path), f"models.{mid}", "needs a model directory"
            )
        require(self.max_models_per_replica >= 1, "max_models_per_replica", "must be >= 1")
        require(self.model_replicas >= 1, "model_replicas", "must be >= 1")
        require(self.ingress_replicas >= 1, "ingress_replicas", "must be >= 1")
        require(
            self.metrics_port is None or 0 < self.metrics_port < 65536,
            "metrics_port",
            f"must be a TCP port or null, got {self.metrics_port}",
        )


@dataclass
class GuardBinding:
    """The guard in front of one model id."""

    # guard index directory (``unlearn guard build``), local or s3://
    index: str = ""
    # guard config YAML; default: INDEX/guard.yaml when present (``unlearn guard calibrate``)
    config: str | None = None
    # dotted GuardConfig overrides applied last, e.g. {"output.cov": 0.5, "embeddings": false}
    overrides: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        """An index is required."""
        require(bool(self.index), "index", "is required: the guard index directory")


@dataclass
class GuardsConfig:
    """The ingress's user_config: the guard of every model id (reloaded in place)."""

    guards: dict[str, GuardBinding] = field(default_factory=dict)  # model id -> binding
    storage_options: dict[str, Any] | None = None
    # any change (a counter, a time) makes Serve call reconfigure, so indexes re-read from disk
    generation: int = 0


def parse_serve_config(data: dict[str, Any]) -> ServeConfig:
    """A checked ``ServeConfig`` from plain data (the app builder's ``args``)."""
    return build(ServeConfig, data)


def guards_config(data: dict[str, Any] | None) -> GuardsConfig:
    """A checked ``GuardsConfig`` from the ingress's user_config (each binding checked too)."""
    try:
        cfg = build(GuardsConfig, data or {})
        cfg.guards = {
            mid: b if isinstance(b, GuardBinding) else build(GuardBinding, b, f"guards.{mid}")
            for mid, b in cfg.guards.items()
        }
    except ConfigError as exc:
        raise ConfigError(f"OpenAIIngress user_config: {exc}") from None
    return cfg


def unbound_models(models: list[str], guards: GuardsConfig) -> list[str]:
    """Model ids without a guard (the ingress refuses to serve them)."""
    return [m for m in models if m not in guards.guards]


def parse_keys(text: str, source: str) -> list[str]:
    """API keys from a file's text (one per line, # comments) or the env variable (commas)."""
    sep = "," if source == API_KEYS_ENV else "\n"
    keys = []
    for raw in text.split(sep):
        key = raw.strip()
        if not key or key.startswith("#"):
            continue
        if any(ch.isspace() for ch in key):
            raise ConfigError(f"{source}: an API key holds whitespace (one key per entry)")
        if len(key) < 8:
            raise ConfigError(f"{source}: an API key is shorter than 8 characters")
        keys.append(key)
    return keys


def load_api_keys(api_keys_file: str | None) -> list[str]:
    """The keys that may call the endpoint: the file if given, else ``UNLEARN_API_KEYS``."""
    if api_keys_file:
        if not os.path.isfile(api_keys_file):
            raise ConfigError(f"api_keys_file {api_keys_file} does not exist")
        with open(api_keys_file, encoding="utf-8") as fh:
            keys = parse_keys(fh.read(), api_keys_file)
        source = api_keys_file
    else:
        keys = parse_keys(os.environ.get(API_KEYS_ENV, ""), API_KEYS_ENV)
        source = API_KEYS_ENV
    if not keys:
        raise ConfigError(
            f"no API keys in {source}: pass --api-keys-file FILE (one key per line) or set "
            f"{API_KEYS_ENV}=key1,key2; the endpoint never runs without authentication"
        )
    return keys


def key_hash(key: str) -> str:
    """A short, stable identifier of an API key for logs and audit (never the key)."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:16]


class KeyRing:
    """API keys held as SHA-256 digests; ``match`` compares in constant time against all."""

    def __init__(self, keys: list[str]):
        self._digests = [hashlib.sha256(k.encode()).digest() for k in keys]

    def __len__(self) -> int:
        return len(self._digests)

    def match(self, presented: str) -> bool:
        """True when ``presented`` is one of the keys; the time taken does not depend on which."""
        digest = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
        found = False
        for d in self._digests:  # every digest is compared, no early exit
            found |= hmac.compare_digest(digest, d)
        return found
