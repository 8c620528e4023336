"""Admin API of the model registry: list versions, show one, promote one, roll back.

Every route needs the ``admin`` scope (401 without a key, 403 with a key lacking it). Errors go
through the one error handler: an unknown version is 404, a malformed one 422 (``field``:
``version``), promoting a rejected version without ``force=true`` 422 (``field``: ``force``), a
rollback with nothing to return to 409. A promotion is atomic (the registry's ``LIVE`` pointer),
and the serving workers pick the new version up on their next request.

Example (open app, no keys)::

    curl localhost:8000/v1/models
    curl -X POST 'localhost:8000/v1/models/20261122-105100.042-3fa2c1/promote?force=true'
    curl -X POST localhost:8000/v1/models/rollback
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, Field

from funnel.api.deps import require
from funnel.api.schemas import ErrorOut
from funnel.training.manifest import ModelManifest, finite
from funnel.training.registry import ModelRegistry

router = APIRouter(tags=["models"])
VersionPath = Annotated[
    str,
    Path(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="a version name"),
]
_ERRORS: dict[int | str, dict[str, Any]] = {s: {"model": ErrorOut} for s in (401, 403, 404, 422)}
_ADMIN = [Depends(require("admin"))]


class DataWindowOut(BaseModel):
    """The training data of a version (event times in epoch ms)."""

    start_ms: int | None = None
    end_ms: int | None = None
    n_interactions: int = 0
    log_offset: int = 0


class ModelOut(BaseModel):
    """One version as the registry lists it."""

    version: str
    status: str = Field(description="candidate | live | rejected | retired")
    reason: str | None = Field(None, description="why it was rejected or retired")
    model: str
    parent_version: str | None = None
    created_at_ms: int
    status_changed_at_ms: int | None = None
    data_window: DataWindowOut
    config_hash: str
    feature_version: str
    package_version: str
    format_version: int
    ndcg: float | None = Field(None, description="NDCG@k of the version on its gate's held-out window")


class ModelDetailOut(ModelOut):
    """One version's whole manifest."""

    n_users: int
    n_items: int
    config: dict[str, Any]
    metrics: dict[str, Any] = Field(description="model selection, and the gate's report under 'gate'")
    meta: dict[str, Any]


class ModelListOut(BaseModel):
    """Every version, oldest first; the live one and the one a rollback would return to."""

    live: str | None
    previous: str | None
    versions: list[ModelOut]


class PromotionOut(BaseModel):
    """The outcome of a promotion or rollback."""

    live: str
    previous: str | None


def _registry(request: Request) -> ModelRegistry:
    registry: ModelRegistry = request.app.state.service.engine.registry
    return registry


def _out(m: ModelManifest, detail: bool = False) -> dict[str, Any]:
    body = finite(m.to_dict())
    body["ndcg"] = ((body.get("metrics", {}).get("gate") or {}).get("candidate") or {}).get("ndcg")
    return body if detail else {k: v for k, v in body.items() if k in ModelOut.model_fields}


@router.get("/v1/models", response_model=ModelListOut, responses=_ERRORS, dependencies=_ADMIN)  # type: ignore[misc]
def list_models(request: Request) -> ModelListOut:
    """Every model version with its status, oldest first."""
    registry = _registry(request)
    versions = [ModelOut(**_out(m)) for m in registry.manifests()]
    return ModelListOut(live=registry.live(), previous=registry.previous_live(), versions=versions)


@router.get("/v1/models/{version}", response_model=ModelDetailOut, responses=_ERRORS, dependencies=_ADMIN)  # type: ignore[misc]
def show_model(request: Request, version: VersionPath) -> ModelDetailOut:
    """One version's manifest: status and reason, data window, hashes, parent, metrics, gate report."""
    return ModelDetailOut(**_out(_registry(request).manifest(version), detail=True))


@router.post(
    "/v1/models/{version}/promote", response_model=PromotionOut, responses=_ERRORS, dependencies=_ADMIN
)  # type: ignore[misc]
def promote_model(
    request: Request,
    version: VersionPath,
    force: Annotated[bool, Query(description="promote a rejected or not yet judged version")] = False,
) -> PromotionOut:
    """Make ``version`` live (atomically); returns it and the version live before."""
    previous = _registry(request).manual_promote(version, force=force)
    return PromotionOut(live=version, previous=previous)


@router.post(
    "/v1/models/rollback",
    response_model=PromotionOut,
    responses={**_ERRORS, 409: {"model": ErrorOut}},
    dependencies=_ADMIN,
)  # type: ignore[misc]
def rollback_model(request: Request) -> PromotionOut:
    """Make the version live before the current one live again (409 when there is none)."""
    registry = _registry(request)
    current = registry.live()
    return PromotionOut(live=registry.rollback(note="rolled back (admin API)"), previous=current)
