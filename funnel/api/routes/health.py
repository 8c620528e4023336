"""``/healthz`` (the process answers), ``/readyz`` (model loaded, stores reachable), ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse

from funnel.api.deps import service
from funnel.api.service import RecommendationService

router = APIRouter(tags=["health"])


@router.get("/healthz")  # type: ignore[misc]
def healthz() -> dict[str, str]:
    """Liveness: the process serves HTTP."""
    return {"status": "ok"}


@router.get("/readyz")  # type: ignore[misc]
def readyz(svc: RecommendationService = Depends(service)) -> JSONResponse:  # noqa: B008
    """Readiness: 200 when the model is loaded and the event log and entity feed answer, else 503."""
    checks = svc.ready()
    ok = all(checks.values())
    return JSONResponse({"ready": ok, "checks": checks}, status_code=200 if ok else 503)


@router.get("/metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}})  # type: ignore[misc]
def metrics(svc: RecommendationService = Depends(service)) -> Response:  # noqa: B008
    """Prometheus exposition of this worker's metrics."""
    body, content_type = svc.metrics.render()
    return Response(body, media_type=content_type)
