"""The application: ``OpenAIIngress`` (guarded API) -> ``UnlearnModel`` (multiplexed models).

Three ways in, one application:

* ``serve run serve/config.yaml`` / ``serve deploy serve/config.yaml``: Ray Serve builds it with
  ``app_builder(args)`` (``import_path: serve.app:app_builder``); the guard bindings are the
  ``user_config`` of the ``OpenAIIngress`` deployment in that file.
* ``unlearn serve --model ID=PATH --guard ID=INDEX``: writes the same config
  (``deploy_config``) and deploys it the way ``serve run CONFIG`` does (``deploy``); SIGHUP re-deploys it with a new
  ``generation``, which reloads every guard index and its thresholds in place.
* Python: ``serve.run(build_app(config, guards))`` (a fresh deployment each time).

Re-deploying a config whose ``args`` are unchanged only updates ``user_config``: Serve calls the
ingress's ``reconfigure`` on the running replicas, which load the new guards in a thread and swap
them in; requests keep flowing and none is dropped.
"""

from __future__ import annotations

import time
from typing import Any

from ray import serve
from ray.serve import Application

from serve.config import GuardsConfig, ServeConfig, guards_config, parse_serve_config
from serve.ingress import OpenAIIngress
from serve.model import ModelServer
from unlearn.config import to_dict
from unlearn.errors import ConfigError

APP_NAME = "unlearn"
IMPORT_PATH = "serve.app:app_builder"
INGRESS = "OpenAIIngress"
MODEL = "UnlearnModel"


def build_app(
    config: ServeConfig | dict[str, Any], guards: GuardsConfig | dict[str, Any] | None = None
) -> Application:
    """The bound application; ``guards`` becomes the ingress's initial user_config."""
    cfg = config if isinstance(config, ServeConfig) else parse_serve_config(config)
    plain = to_dict(cfg)
    model = ModelServer.options(
        num_replicas=cfg.model_replicas,
        ray_actor_options={"num_cpus": cfg.model_num_cpus, "num_gpus": cfg.model_num_gpus},
    ).bind(plain)
    options: dict[str, Any] = {
        "num_replicas": cfg.ingress_replicas,
        "ray_actor_options": {"num_cpus": cfg.ingress_num_cpus},
    }
    if guards is not None:
        g = guards if isinstance(guards, GuardsConfig) else guards_config(guards)
        options["user_config"] = to_dict(g)
    return OpenAIIngress.options(**options).bind(plain, model)


def app_builder(args: dict[str, Any]) -> Application:
    """Serve's application builder (``import_path: serve.app:app_builder``); ``args`` is a
    ``ServeConfig``. Guards come from the ``OpenAIIngress`` deployment's ``user_config``."""
    return build_app(parse_serve_config(dict(args or {})))


def deploy_config(
    cfg: ServeConfig, guards: GuardsConfig, *, host: str = "127.0.0.1", port: int = 8000
) -> dict[str, Any]:
    """The Ray Serve config (the format of serve/config.yaml) for these settings."""
    return {
        "proxy_location": "HeadOnly",
        "http_options": {"host": host, "port": port},
        "applications": [
            {
                "name": APP_NAME,
                "route_prefix": "/",
                "import_path": IMPORT_PATH,
                "args": to_dict(cfg),
                "deployments": [{"name": INGRESS, "user_config": to_dict(guards)}],
            }
        ],
    }


def deploy(config: dict[str, Any], *, timeout_s: float = 600.0) -> None:
    """Deploy a Serve config on the connected Ray, as ``serve run CONFIG`` does, and wait.

    Uses the same two calls as Ray's own ``serve run`` of a config file (``serve_start`` and the
    controller client's ``deploy_apps``; Ray 2.60). Raises ``ConfigError`` with Serve's message
    when the application fails to deploy.
    """
    from ray.serve._private import api as serve_api
    from ray.serve.schema import ServeDeploySchema

    schema = ServeDeploySchema.model_validate(config)
    client = serve_api.serve_start(
        http_options=schema.http_options.model_dump(), proxy_location=schema.proxy_location
    )
    client.deploy_apps(schema, _blocking=False)
    names = [a.name for a in schema.applications]
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        apps = serve.status().applications
        states = {n: apps.get(n) for n in names}
        failed = {n: s for n, s in states.items() if s is not None and s.status == "DEPLOY_FAILED"}
        if failed:
            raise ConfigError("; ".join(_failure(n, s) for n, s in failed.items()))
        if all(s is not None and s.status == "RUNNING" for s in states.values()) and all(
            d.status == "HEALTHY" for s in states.values() for d in s.deployments.values()
        ):
            return
        time.sleep(0.25)
    raise TimeoutError(f"Serve applications {names} not running after {timeout_s:.0f}s")


def warm_up(models: list[str], timeout_s: float = 600.0) -> dict[str, float]:
    """Load each model on a model replica now (one 1-token generation), so that the first
    client request does not wait for it; returns seconds per model."""
    handle = serve.get_deployment_handle(MODEL, APP_NAME)
    out = {}
    for mid in models:
        started = time.time()
        payload = {
            "kind": "completion",
            "messages": None,
            "prompt": "Hello",
            "sampling": {
                "max_tokens": 1,
                "temperature": 0.0,
                "top_p": 1.0,
                "seed": None,
                "stop": [],
                "ignore_eos": True,
                "min_tokens": 0,
            },
            "request_id": f"warm-up-{mid}",
        }
        gen = handle.options(stream=True, multiplexed_model_id=mid).generate.remote(payload)
        for item in gen:
            if item["type"] == "error":
                raise ConfigError(f"warm-up of model {mid}: {item['message']}")
            if time.time() - started > timeout_s:
                raise TimeoutError(f"warm-up of model {mid} took over {timeout_s:.0f}s")
        out[mid] = time.time() - started
    return out


def _failure(name: str, status: Any) -> str:
    """Serve's reason for a failed application, with each unhealthy deployment's message."""
    parts = [f"application {name} failed to deploy: {status.message}"]
    for dname, d in status.deployments.items():
        if d.status != "HEALTHY" and d.message:
            parts.append(f"{dname}: {d.message[-2000:]}")
    return "\n".join(parts)


def reload_guards(
    cfg: ServeConfig,
    guards: GuardsConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    timeout_s: float = 120.0,
) -> None:
    """Re-deploy with ``guards`` (a new ``generation`` forces indexes to be re-read) and wait
    until the ingress replicas serve it; ``ConfigError`` when they could not load it (they keep
    their previous guards)."""
    deploy(deploy_config(cfg, guards, host=host, port=port), timeout_s=timeout_s)
    handle = serve.get_deployment_handle(INGRESS, APP_NAME)
    deadline = time.time() + timeout_s
    while time.time() < deadline:  # every replica reports the new generation (or its failure)
        seen = [handle.stats.remote().result() for _ in range(2 * cfg.ingress_replicas)]
        for st in seen:
            err = st.get("reload_error")
            if err and err.get("generation") == guards.generation:
                raise ConfigError(f"guard reload failed: {err['error']}")
        if all(st["generation"] == guards.generation for st in seen):
            return
        time.sleep(0.25)
    raise TimeoutError(f"guards not reloaded after {timeout_s:.0f}s")
