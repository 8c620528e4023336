"""A recommendation request (:class:`RecommendationRequest`) and its answer (:class:`RecommendationPage`).

The route validates the query into a request; :class:`~funnel.api.service.RecommendationService`
answers it with a page, which the route serialises.

Example:
    >>> RecommendationRequest("u1", limit=5).limit
    5
    >>> RecommendationPage([], None, "v1").fallback is None
    True
"""

from __future__ import annotations

from dataclasses import dataclass, field

from funnel.engine import Recommendation
from funnel.ranking.trace import RequestTrace


@dataclass(frozen=True)
class RecommendationRequest:
    """One ``GET /v1/recommendations`` call, validated by the route."""

    user_id: str
    limit: int = 10
    device: str | None = None
    surface: str | None = None
    country: str | None = None
    cursor: str | None = None
    exclude: tuple[str, ...] = ()
    category: str | None = None
    debug: bool = False
    """Record a :class:`~funnel.ranking.trace.RequestTrace` of the request (``page.trace``)."""
    request_id: str | None = None
    """The HTTP request's id: the served-feature log samples requests by it (None: never logged)."""


@dataclass
class RecommendationPage:
    """The items of one page and how they were produced."""

    items: list[Recommendation]
    next_cursor: str | None
    model_version: str | None
    fallback: str | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    trace: RequestTrace | None = None
    experiment: str | None = None
    """The running experiment the user is in (``arm`` names their arm), else None."""
    arm: str | None = None
