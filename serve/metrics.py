"""Prometheus metrics of the ingress, served on a loopback port (never on the API's address).

Ray's own metrics export binds every interface, so the app serves its own ``/metrics`` with
prometheus_client on ``127.0.0.1:metrics_port`` (+ the replica's rank on its node, so several
ingress replicas on one node do not collide). Model labels only take served ids ("other" for
anything else), so a client cannot grow the label space.
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    start_http_server,
)

logger = logging.getLogger("ray.serve")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
GUARD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 2)


class Metrics:
    """The ingress's counters and histograms in their own registry."""

    def __init__(self, models: list[str]):
        self.models = set(models)
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "unlearn_serve_requests",
            "HTTP requests by route, model and status code",
            ["route", "model", "status"],
            registry=r,
        )
        self.blocks = Counter(
            "unlearn_serve_guard_blocks",
            "Guard blocks by model, direction (input/output) and layer",
            ["model", "direction", "layer"],
            registry=r,
        )
        self.latency = Histogram(
            "unlearn_serve_request_seconds",
            "Request latency (to the last byte) by route, model and streaming",
            ["route", "model", "stream"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.first_token = Histogram(
            "unlearn_serve_time_to_first_text_seconds",
            "Time to the first released text of a streamed response",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "unlearn_serve_tokens",
            "Tokens by model and kind (prompt/completion)",
            ["model", "kind"],
            registry=r,
        )
        self.guard_seconds = Histogram(
            "unlearn_serve_guard_seconds",
            "Guard time per request and direction (input: one check; output: the whole stream)",
            ["direction"],
            buckets=GUARD_BUCKETS,
            registry=r,
        )
        self.audit_errors = Counter(
            "unlearn_serve_audit_errors",
            "Blocks whose audit record could not be written (the block still stands)",
            registry=r,
        )
        ProcessCollector(registry=r)  # process_cpu_seconds_total etc. of this ingress replica
        self.port: int | None = None

    def label(self, model: Any) -> str:
        """A model label: the id if served, else "other"."""
        return model if isinstance(model, str) and model in self.models else "other"

    def serve(self, port: int) -> int | None:
        """Start /metrics on 127.0.0.1:port; None (logged) when the port is taken."""
        try:
            start_http_server(port, addr="127.0.0.1", registry=self.registry)
        except OSError as exc:
            logger.error("metrics: cannot listen on 127.0.0.1:%d (%s); /metrics is off", port, exc)
            return None
        self.port = port
        logger.info("metrics on http://127.0.0.1:%d/metrics", port)
        return port
