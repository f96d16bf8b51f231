"""The server's Prometheus metrics, in a registry of its own (so two servers in one process, as in the
tests, do not collide): requests and errors per route and status, latency, texts per forward pass, the
queue's length. `MetricsMiddleware` counts every request, refused ones included."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# routes are labelled by name; anything else is `other`, so no client can grow the label set
ROUTES = ("/", "/predict", "/explain", "/health", "/info", "/metrics", "/ui")
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ("route", "status")
        self.requests = Counter("textclf_requests", "HTTP requests answered", labels, registry=self.registry)
        self.errors = Counter("textclf_errors", "HTTP requests answered 4xx or 5xx", labels, registry=self.registry)
        self.latency = Histogram(
            "textclf_request_seconds", "time to answer", ("route",), buckets=LATENCY_BUCKETS, registry=self.registry
        )
        self.batch_texts = Histogram(
            "textclf_batch_texts", "texts per forward pass", buckets=BATCH_BUCKETS, registry=self.registry
        )
        self.queued_texts = Gauge("textclf_queued_texts", "texts accepted, not yet answered", registry=self.registry)
        self.failed_batches = Counter("textclf_failed_batches", "forward passes that raised", registry=self.registry)

    def observe(self, path: str, status: int, seconds: float) -> None:
        route = path if path in ROUTES else "other"
        self.requests.labels(route, str(status)).inc()
        if status >= 400:
            self.errors.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def text(self) -> bytes:
        return generate_latest(self.registry)


class MetricsMiddleware:
    """A plain ASGI middleware (cheaper than Starlette's BaseHTTPMiddleware): status and time of each request."""

    def __init__(self, app: Any, metrics: ServerMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def send_and_note(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.metrics.observe(scope["path"], status, time.perf_counter() - start)
