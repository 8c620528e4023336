"""``create_app``: the FastAPI application over one :class:`~funnel.engine.Engine`.

Example:
    >>> import tempfile
    >>> from fastapi.testclient import TestClient
    >>> from funnel.engine import Engine
    >>> client = TestClient(create_app(Engine(tempfile.mkdtemp())))
    >>> client.get("/healthz").json()
    {'status': 'ok'}
    >>> r = client.get("/v1/recommendations", params={"user_id": "u1", "limit": 500})
    >>> r.status_code, r.json()["error"]["field"]
    (422, 'limit')
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI

from funnel.api.auth import ApiKeys
from funnel.api.entity_feed import EntityFeed
from funnel.api.errors import install_error_handlers
from funnel.api.metrics import ApiMetrics
from funnel.api.middleware import ApiMiddleware
from funnel.api.routes import catalogue, events, experiments, health, models, recommendations
from funnel.api.service import RecommendationService
from funnel.engine import Engine
from funnel.monitoring.collector import MonitoringCollector


@dataclass(frozen=True)
class ApiSettings:
    """Limits of the HTTP layer."""

    max_body_bytes: int = 2 * 1024 * 1024
    source_deadline_ms: float | None = 100.0
    """Per-request deadline of each retrieval source (late ones are dropped and counted)."""


def create_app(
    engine: Engine,
    feed: EntityFeed | None = None,
    api_keys: ApiKeys | None = None,
    settings: ApiSettings | None = None,
) -> FastAPI:
    """The API app; see the module docstring. ``api_keys`` default: none (open, loopback use)."""
    settings = settings or ApiSettings()
    metrics = ApiMetrics()
    app = FastAPI(
        title="funnel",
        version="1",
        description="Recommendations, events and catalogue of a funnel engine.",
    )
    if engine.source_deadline_ms is None:
        engine.set_source_deadline(settings.source_deadline_ms)
    app.state.metrics = metrics
    metrics.registry.register(MonitoringCollector(engine))  # staleness, quality, index, skew gauges
    app.state.api_keys = api_keys or ApiKeys()
    app.state.service = RecommendationService(engine, feed, metrics)
    install_error_handlers(app)
    for module in (recommendations, events, catalogue, experiments, models, health):
        app.include_router(module.router)
    app.add_middleware(ApiMiddleware, metrics=metrics, max_body_bytes=settings.max_body_bytes)
    return app
