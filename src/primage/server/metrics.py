"""Prometheus metrics: requests by route and status, their latency, bytes moved, task outcomes."""

from __future__ import annotations

import time
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from primage.executors.base import Outcome, TaskEvent


class Metrics:
    """One registry per app, so that several apps in one process (tests) never collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "primage_http_requests_total",
            "HTTP requests handled",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "primage_http_request_duration_seconds",
            "Time to answer an HTTP request (headers and body)",
            ["method", "route"],
            registry=self.registry,
        )
        self.bytes_uploaded = Counter(
            "primage_bytes_uploaded_total", "Bytes written into spaces", registry=self.registry
        )
        self.bytes_downloaded = Counter(
            "primage_bytes_downloaded_total", "Bytes served from spaces", registry=self.registry
        )
        self.tasks_started = Counter(
            "primage_tasks_started_total", "Task attempts started", registry=self.registry
        )
        self.tasks_ended = Counter(
            "primage_tasks_ended_total",
            "Task attempts ended, by outcome (succeeded, failed, timed_out, cancelled, lost, "
            "not_started)",
            ["outcome"],
            registry=self.registry,
        )

    def task_events(self, events: Sequence[TaskEvent]) -> None:
        """Count what the executor reported; called by the reconciler once per turn."""
        for event in events:
            if event.kind == "started":
                self.tasks_started.inc()
            elif event.outcome is Outcome.EXITED:
                self.tasks_ended.labels("succeeded" if event.exit_code == 0 else "failed").inc()
            elif event.outcome is not None:
                self.tasks_ended.labels(str(event.outcome)).inc()


class MetricsMiddleware:
    """Pure ASGI middleware (no body buffering, so streamed transfers stay streamed)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    @staticmethod
    def _route(scope: Scope) -> str:
        """The route template (``/spaces/{name}``), set in the scope by the router."""
        route = scope.get("route")
        return str(getattr(route, "path", "unmatched"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route, method = self._route(scope), scope["method"]
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - start)
