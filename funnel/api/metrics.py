"""Prometheus metrics of the API: request and per-stage latency, fallbacks, candidates, errors.

One :class:`ApiMetrics` per app, on its own ``CollectorRegistry`` (so several apps in one process
— tests — do not collide). ``GET /metrics`` serves :meth:`ApiMetrics.render`. Each uvicorn worker
exports its own counters; scrape every worker or put them behind a per-worker port.

Example:
    >>> m = ApiMetrics()
    >>> m.fallbacks.labels(kind="stale_state").inc()
    >>> b"funnel_fallbacks_total" in m.render()[0]
    True
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5)


class ApiMetrics:
    """The API's collectors; see the module docstring."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Histogram(
            "funnel_request_seconds",
            "HTTP request latency",
            ["route", "method", "status"],
            registry=r,
            buckets=_BUCKETS,
        )
        self.stages = Histogram(
            "funnel_stage_seconds", "Latency of one serving stage", ["stage"], registry=r, buckets=_BUCKETS
        )
        self.fallbacks = Counter("funnel_fallbacks", "Responses served by a fallback", ["kind"], registry=r)
        self.candidates = Counter(
            "funnel_candidates", "Candidates retrieved, by source", ["source"], registry=r
        )
        self.late_sources = Counter(
            "funnel_late_sources", "Sources dropped for missing their deadline", ["source"], registry=r
        )
        self.errors = Counter("funnel_errors", "Error responses, by error code", ["code"], registry=r)
        self.events = Counter("funnel_events", "Events accepted, by kind", ["kind"], registry=r)
        self.duplicates = Counter(
            "funnel_duplicate_events", "Events already logged (same event_id)", registry=r
        )
        self.catch_up_failures = Counter(
            "funnel_catch_up_failures", "Failed reads of the event log / entity feed", registry=r
        )
        self.breaker_open = Gauge(
            "funnel_breaker_open", "1 while a circuit breaker is open", ["name"], registry=r
        )
        self.model_info = Gauge(
            "funnel_model_loaded", "1 for the model version being served", ["version"], registry=r
        )
        self.model_swaps = Counter(
            "funnel_model_swaps", "Newly promoted versions swapped in without a restart", registry=r
        )

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
