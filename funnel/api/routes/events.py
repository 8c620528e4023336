"""``POST /v1/interactions`` and ``POST /v1/impressions``: the write path of the feedback loop.

Both answer 202 only after the event log's append returned — durable as the log is (fsync'd for
``file://``, acknowledged by the server for ``redis://``). A batch is validated as a whole before
anything is appended: either every event is accepted or none is.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Request

from funnel.api.deps import require, service
from funnel.api.errors import request_id_of
from funnel.api.schemas import Accepted, ErrorOut, ImpressionIn, InteractionBatch, InteractionIn
from funnel.api.service import RecommendationService

router = APIRouter(tags=["events"], dependencies=[Depends(require("write"))])
_ERRORS = {
    400: {"model": ErrorOut},
    401: {"model": ErrorOut},
    403: {"model": ErrorOut},
    413: {"model": ErrorOut},
    422: {"model": ErrorOut},
    503: {"model": ErrorOut},
}


@router.post("/v1/interactions", status_code=202, response_model=Accepted, responses=_ERRORS)  # type: ignore[misc]
def interactions(
    request: Request,
    body: Annotated[InteractionIn | InteractionBatch, Body()],
    svc: RecommendationService = Depends(service),  # noqa: B008
) -> Accepted:
    """Log one interaction (an object) or a batch (an array of up to 1000); idempotent on ``event_id``."""
    events = body if isinstance(body, list) else [body]
    accepted, duplicates = svc.log_interactions([e.model_dump() for e in events])
    return Accepted(accepted=accepted, duplicates=duplicates, request_id=request_id_of(request))


@router.post("/v1/impressions", status_code=202, response_model=Accepted, responses=_ERRORS)  # type: ignore[misc]
def impressions(
    request: Request,
    body: ImpressionIn,
    svc: RecommendationService = Depends(service),  # noqa: B008
) -> Accepted:
    """Log the page a user was shown (``items_shown`` with their ``positions``).

    ``propensities`` and ``sources`` (optional) give one value per item shown; ``sources`` labels
    what produced each slot (the response's ``reason_code``), read by the per-source click monitor.
    """
    svc.log_impression(body.model_dump())
    return Accepted(accepted=1, request_id=request_id_of(request))
