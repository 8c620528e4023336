"""Items and users: similar items, catalogue upserts and unlisting, user attributes and history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from funnel.api.deps import require, service
from funnel.api.errors import request_id_of
from funnel.api.schemas import (
    NOT_BLANK,
    Accepted,
    ErrorOut,
    HistoryEntry,
    HistoryOut,
    ItemBatch,
    ItemIn,
    RecommendedItem,
    UserIn,
)
from funnel.api.service import MODEL_VERSION_HEADER, RecommendationService, finite_or_none

router = APIRouter(tags=["catalogue"])
PathId = Annotated[str, Path(min_length=1, max_length=256, pattern=NOT_BLANK, description="not blank")]
_ERRORS = {
    401: {"model": ErrorOut},
    403: {"model": ErrorOut},
    404: {"model": ErrorOut},
    422: {"model": ErrorOut},
    503: {"model": ErrorOut},
}
_BODY_ERRORS = {**_ERRORS, 400: {"model": ErrorOut}, 413: {"model": ErrorOut}}
_svc = Depends(service)


@router.get(
    "/v1/items/{item_id}/similar",
    response_model=list[RecommendedItem],
    responses=_ERRORS,
    dependencies=[Depends(require("read"))],
)  # type: ignore[misc]
def similar(
    response: Response,
    item_id: PathId,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    svc: RecommendationService = _svc,
) -> list[RecommendedItem]:
    """Items most similar to ``item_id`` (404 for an unknown or unlisted item).

    The ``x-funnel-model-version`` header names the model version that answered.
    """
    recs, version = svc.similar_page(item_id, limit)
    response.headers[MODEL_VERSION_HEADER] = version
    return [
        RecommendedItem(
            item_id=r.item_id,
            score=finite_or_none(r.score),
            reason=r.reason,
            reason_code=r.reason_code,
            title=r.title,
        )
        for r in recs
    ]


@router.put(
    "/v1/items/{item_id}",
    status_code=202,
    response_model=Accepted,
    responses=_BODY_ERRORS,
    dependencies=[Depends(require("admin"))],
)  # type: ignore[misc]
def put_item(request: Request, item_id: PathId, body: ItemIn, svc: RecommendationService = _svc) -> Accepted:
    """Create or replace one catalogue item."""
    n = svc.upsert_items([{**body.model_dump(), "item_id": item_id}])
    return Accepted(accepted=n, request_id=request_id_of(request))


@router.post(
    "/v1/items:batch",
    status_code=202,
    response_model=Accepted,
    responses=_BODY_ERRORS,
    dependencies=[Depends(require("admin"))],
)  # type: ignore[misc]
def put_items(request: Request, body: ItemBatch, svc: RecommendationService = _svc) -> Accepted:
    """Create or replace up to 1000 items (validated as a whole first)."""
    n = svc.upsert_items([item.model_dump() for item in body.items])
    return Accepted(accepted=n, request_id=request_id_of(request))


@router.delete(
    "/v1/items/{item_id}", status_code=204, responses=_ERRORS, dependencies=[Depends(require("admin"))]
)  # type: ignore[misc]
def delete_item(item_id: PathId, svc: RecommendationService = _svc) -> Response:
    """Unlist an item: once this returns, no worker recommends it again."""
    svc.unlist(item_id)
    return Response(status_code=204)


@router.put(
    "/v1/users/{user_id}",
    status_code=202,
    response_model=Accepted,
    responses=_BODY_ERRORS,
    dependencies=[Depends(require("admin"))],
)  # type: ignore[misc]
def put_user(request: Request, user_id: PathId, body: UserIn, svc: RecommendationService = _svc) -> Accepted:
    """Create or update a user's attributes (used by the next recommendation: region, age bucket)."""
    svc.upsert_user(user_id, body.model_dump())
    return Accepted(accepted=1, request_id=request_id_of(request))


@router.get(
    "/v1/users/{user_id}/history",
    response_model=HistoryOut,
    responses=_ERRORS,
    dependencies=[Depends(require("read"))],
)  # type: ignore[misc]
def history(
    user_id: PathId, limit: Annotated[int, Query(ge=1, le=1000)] = 50, svc: RecommendationService = _svc
) -> HistoryOut:
    """The user's latest interactions (imported and logged), newest first; empty for unknown users."""
    return HistoryOut(user_id=user_id, items=[HistoryEntry(**row) for row in svc.history.get(user_id, limit)])
