"""``GET /v1/recommendations``: a page of recommendations for one user in one context."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.exceptions import HTTPException

from funnel.api.auth import grants
from funnel.api.debug import trace_out
from funnel.api.deps import require, service
from funnel.api.errors import request_id_of
from funnel.api.schemas import NOT_BLANK, ErrorOut, RecommendationsOut, RecommendedItem
from funnel.api.service import (
    MODEL_VERSION_HEADER,
    RecommendationRequest,
    RecommendationService,
    finite_or_none,
)

router = APIRouter(tags=["recommendations"])
Short = Annotated[str | None, Query(min_length=1, max_length=64)]
_ERRORS = {
    401: {"model": ErrorOut},
    403: {"model": ErrorOut},
    422: {"model": ErrorOut},
    503: {"model": ErrorOut},
}


@router.get("/v1/recommendations", response_model=RecommendationsOut, responses=_ERRORS)  # type: ignore[misc]
def recommendations(
    request: Request,
    user_id: Annotated[str, Query(min_length=1, max_length=256, pattern=NOT_BLANK, description="not blank")],
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    device: Short = None,
    surface: Short = None,
    country: Short = None,
    cursor: Annotated[str | None, Query(min_length=1, max_length=16_384)] = None,
    exclude: Annotated[list[str] | None, Query(max_length=1000)] = None,
    category: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
    debug: bool = False,
    scopes: frozenset[str] = Depends(require("read")),
    svc: RecommendationService = Depends(service),  # noqa: B008
) -> Response:
    """Top ``limit`` items for ``user_id``; unknown users get the cold-start page.

    ``exclude``: item ids never to return (repeat the parameter or comma-separate). ``cursor``:
    the previous page's ``next_cursor``. ``debug=true`` (admin scope) adds the request's trace:
    candidates per source, the ranked list with head scores and features, what each re-ranking
    step changed, stage timings (see ``DebugOut``). ``model_version`` (also the
    ``x-funnel-model-version`` header) names the version that ranked the page.
    """
    if debug and not grants(scopes, "admin"):
        raise HTTPException(403, "debug traces need the 'admin' scope")
    excluded = tuple(x for part in (exclude or []) for x in part.split(",") if x)
    rid = request_id_of(request)  # the served-feature log samples requests by it
    request_args = (user_id, limit, device, surface, country, cursor, excluded, category, debug, rid)
    page = svc.recommend(RecommendationRequest(*request_args))
    items = [
        RecommendedItem(
            item_id=r.item_id,
            score=finite_or_none(r.score),
            reason=r.reason,
            reason_code=r.reason_code,
            title=r.title,
            propensity=r.propensity,
        )
        for r in page.items
    ]
    trace = trace_out(page.trace, svc.breaker.state) if page.trace is not None else None
    out = RecommendationsOut(
        items=items,
        request_id=request_id_of(request),
        next_cursor=page.next_cursor,
        model_version=page.model_version,
        experiment=page.experiment,
        arm=page.arm,
        fallback=page.fallback,
        debug=trace,
    )
    # validated once, here: a returned model would be validated again (in the thread pool)
    headers = {} if page.model_version is None else {MODEL_VERSION_HEADER: page.model_version}
    return Response(out.model_dump_json(), media_type="application/json", headers=headers)
