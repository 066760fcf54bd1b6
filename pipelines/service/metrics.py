"""Prometheus collectors of the app and the ASGI middleware that counts requests.

Label values are bounded: methods outside the standard set count as ``other`` and paths as
their route template (``/v1/pools/{pool_id}/forecast``) or ``unmatched``.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipelines.service.state import RegistryStatus, ServiceState

__all__ = ["Metrics", "MetricsMiddleware", "KNOWN_METHODS", "method_label"]

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    """The method itself when standard, else ``other`` (clients choose method strings)."""
    m = method.upper()
    return m if m in KNOWN_METHODS else "other"


class Metrics:
    """Prometheus collectors in a registry of the app's own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("lpa_requests_total", "HTTP requests",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("lpa_request_latency_seconds", "Request latency", ["route"],
                                 buckets=(.005, .01, .02, .05, .1, .25, .5, 1, 2.5), registry=r)
        self.model = Gauge("lpa_model_info", "Model version in use (value 1)",
                           ["target", "version"], registry=r)
        self.feature_age = Gauge("lpa_feature_age_hours", "Age of the latest features",
                                 registry=r)
        self.registry_up = Gauge("lpa_registry_up",
                                 "1 when the last registry read succeeded, 0 when it failed "
                                 "(the last loaded models keep serving)", registry=r)
        self.registry_failures = Counter("lpa_registry_failures_total",
                                         "Registry reads that failed", registry=r)
        self.loaded_at = Gauge("lpa_state_loaded_timestamp_seconds",
                               "Unix time the served state was built", registry=r)

    def set_state(self, state: ServiceState) -> None:
        """Publish the model versions and load time of a state."""
        self.model.clear()
        for t, v in state.model_versions.items():
            self.model.labels(target=t, version=v).set(1)
        self.loaded_at.set(state.loaded_at)
        self.feature_age.set(state.age_hours())

    def set_registry(self, status: RegistryStatus, failed_now: bool) -> None:
        """Publish the registry's reachability after a read."""
        if status.reachable is not None:
            self.registry_up.set(1.0 if status.reachable else 0.0)
        if failed_now:
            self.registry_failures.inc()


class MetricsMiddleware:
    """Count and time every HTTP request by route template, method and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request and record its labels."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [500]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = str(getattr(route, "path", "")) or "unmatched"
            self.metrics.requests.labels(route=path, method=method_label(scope["method"]),
                                         status=str(status[0])).inc()
            self.metrics.latency.labels(route=path).observe(time.perf_counter() - t0)
