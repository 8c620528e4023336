"""Request and response bodies of the HTTP API (pydantic models: the OpenAPI spec is built from them).

Bodies are strict (``"1"`` is not a number) and closed (an unknown field is an error naming it),
so a client's typo is a 422, not a silently dropped field. The spec states every rule a single
field has (an id is not blank, a timestamp lies in the range :mod:`funnel.core.schema` accepts),
so a request the spec allows is rejected only for a rule between fields (``positions`` as long
as ``items_shown``) or an opaque value (a ``cursor`` this API did not issue). An integer field
takes a JSON number with no fraction (``3.0``), as JSON Schema's ``integer`` does.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from funnel.core.schema import MAX_TIMESTAMP_MS, MIN_PUBLISHED_MS, MIN_TIMESTAMP_MS


def _integral(value: Any) -> Any:
    """``3.0`` -> ``3`` (JSON Schema's ``integer``); anything else is left to the strict check."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


_Integral = BeforeValidator(_integral)
NOT_BLANK = r"[^\s\x1c-\x1f\x85]"
"""Has a character that is not whitespace to ``str.strip`` (what funnel.core.schema rejects as blank)."""
Id = Annotated[str, Field(min_length=1, max_length=256, pattern=NOT_BLANK, description="not blank")]
EpochMs = Annotated[
    int,
    Field(gt=MIN_TIMESTAMP_MS, lt=MAX_TIMESTAMP_MS, description="epoch milliseconds, 1970 to 2100"),
    _Integral,
]
PublishedMs = Annotated[
    int,
    Field(gt=MIN_PUBLISHED_MS, lt=MAX_TIMESTAMP_MS, description="epoch milliseconds, 1800 to 2100"),
    _Integral,
]
ACTIONS = ("click", "view", "watch", "like", "rating", "purchase", "skip", "not_interested", "share", "save")
Action = Literal[
    "click", "view", "watch", "like", "rating", "purchase", "skip", "not_interested", "share", "save"
]
MAX_BATCH = 1000


class Closed(BaseModel):
    """A strict body that rejects unknown fields."""

    model_config = ConfigDict(extra="forbid", strict=True)


class InteractionIn(Closed):
    """One user action on one item; ``event_id`` makes retries idempotent."""

    event_id: Id | None = None
    user_id: Id
    item_id: Id
    action: Action
    value: float | None = Field(default=None, allow_inf_nan=False)
    dwell_ms: Annotated[int, Field(ge=0, le=86_400_000), _Integral] | None = None
    request_id: Id | None = None
    timestamp: EpochMs | None = Field(default=None, description="epoch milliseconds; default: now")


InteractionBatch = Annotated[list[InteractionIn], Field(min_length=1, max_length=MAX_BATCH)]


class ImpressionIn(Closed):
    """The page a user was shown: item ids and their positions (0-based), from one request.

    ``experiment`` and ``arm``: echo the response's; when both are absent the server fills them
    from the user's assignment in the running experiment. ``propensities`` and ``sources``: one
    per item shown, echoed from the response (``propensity``; ``reason_code`` or a retrieval
    source name), so monitoring can attribute clicks to what produced each slot.
    """

    request_id: Id
    user_id: Id
    items_shown: Annotated[list[Id], Field(min_length=1, max_length=1000)]
    positions: Annotated[
        list[Annotated[int, Field(ge=0, le=100_000), _Integral]], Field(min_length=1, max_length=1000)
    ]
    propensities: list[Annotated[float, Field(gt=0, le=1)]] | None = None
    sources: list[Id] | None = None
    surface: Id | None = None
    experiment: Id | None = None
    arm: Id | None = None
    timestamp: EpochMs | None = Field(default=None, description="epoch milliseconds; default: now")


class Accepted(BaseModel):
    """What a write call accepted (``duplicates``: events whose ``event_id`` was already logged)."""

    accepted: int
    duplicates: int = 0
    request_id: str


class ItemIn(Closed):
    """A catalogue item (``PUT`` replaces the whole item)."""

    title: Annotated[str, Field(max_length=2000)] | None = None
    description: Annotated[str, Field(max_length=20_000)] | None = None
    categories: Annotated[list[Id], Field(max_length=100)] = []
    tags: Annotated[list[Id], Field(max_length=200)] = []
    creator_id: Id | None = None
    published_at: PublishedMs | None = None
    status: Literal["listed", "unlisted"] = "listed"
    attributes: dict[str, Any] = {}


class ItemWithId(ItemIn):
    """An item in a batch upsert."""

    item_id: Id


class ItemBatch(Closed):
    """``POST /v1/items:batch``."""

    items: Annotated[list[ItemWithId], Field(min_length=1, max_length=MAX_BATCH)]


class UserIn(Closed):
    """A user's attributes (country, language, age_bucket, ...)."""

    created_at: EpochMs | None = None
    attributes: dict[str, Annotated[str, Field(max_length=256)]] = {}


class RecommendedItem(BaseModel):
    """One recommended item; ``score`` is null for popularity padding."""

    item_id: str
    score: float | None
    reason: str
    reason_code: str
    title: str | None = None
    propensity: float = 1.0


class SourceCandidateOut(BaseModel):
    """One of a retrieval source's best candidates: its source score and 0-based rank there."""

    item_id: str
    score: float | None
    rank: int


class SourceOut(BaseModel):
    """One retrieval source in a request: candidates returned, error (failed, late, skipped), the best."""

    name: str
    count: int
    error: str | None
    top: list[SourceCandidateOut]


class RetrievalOut(BaseModel):
    """Candidates per source and after the merge."""

    sources: list[SourceOut]
    merged: int | None


class RankedItemOut(BaseModel):
    """A candidate as ranked before re-ranking: rank and final score, heads, features, where it went.

    ``position`` is its 0-based place on the page served (``null``: not served); feature values are
    ``null`` where missing (NaN). ``heads`` and ``features`` are empty without a ranker.
    """

    item_id: str
    rank: int
    score: float | None
    position: int | None
    source: str | None = None
    merge_position: int | None = None
    heads: dict[str, float | None] = {}
    features: dict[str, float | None] = {}


class RankingOut(BaseModel):
    """The list before re-ranking (ranker, or the fallback's): the best and the served candidates."""

    candidates: int
    weights: dict[str, float]
    items: list[RankedItemOut]


class RemovedOut(BaseModel):
    """An item a step removed, and why."""

    item_id: str
    reason: str


class StepOut(BaseModel):
    """What one re-ranking or serving step changed (lists cut at 100 items; ``removed_total`` is all)."""

    step: str
    removed: list[RemovedOut]
    removed_total: int
    moved: list[str]
    inserted: list[str]
    rescored: list[str]
    notes: dict[str, Any] = {}


class MoveOut(BaseModel):
    """A served item whose place differs from its rank before re-ranking (``rank`` null: not ranked)."""

    item_id: str
    rank: int | None
    position: int


class RerankOut(BaseModel):
    """Re-ranking: the steps in order, the served items that moved, explored and sponsored items."""

    steps: list[StepOut]
    moves: list[MoveOut]
    explored: list[str]
    sponsored: list[str]


class DebugOut(BaseModel):
    """The trace of one request (``debug=true``, admin scope).

    ``path``: the stage that produced the list — ``ranking``, ``retrieval_order`` (the ranker
    failed), ``baseline`` (no ranking pipeline, or it failed) or ``popular`` (the pipeline failed);
    ``notes`` say why. ``timings_ms`` per stage: ``catch_up``, ``pipeline`` and, where they ran,
    ``retrieval``, ``features``, ``ranking``, ``rerank``, ``baseline``.
    """

    path: str
    fallback: str | None
    notes: list[str]
    timings_ms: dict[str, float]
    breaker: str
    retrieval: RetrievalOut | None
    ranking: RankingOut | None
    rerank: RerankOut
    served: list[str]


class RecommendationsOut(BaseModel):
    """A page of recommendations; pass ``next_cursor`` back as ``cursor`` for the next page.

    ``experiment`` and ``arm``: the running experiment and the user's arm in it (null when the
    user is in none); log them with the impression.
    """

    items: list[RecommendedItem]
    request_id: str
    next_cursor: str | None
    model_version: str | None
    experiment: str | None = None
    arm: str | None = None
    fallback: str | None = None
    debug: DebugOut | None = None


class HistoryEntry(BaseModel):
    """One past interaction."""

    item_id: str
    action: str
    value: float | None
    timestamp: int
    source: Literal["lake", "log"]


class HistoryOut(BaseModel):
    """A user's latest interactions, newest first."""

    user_id: str
    items: list[HistoryEntry]


class ErrorBody(BaseModel):
    """The error part of every 4xx/5xx response."""

    code: str
    message: str
    field: str | None = None


class ErrorOut(BaseModel):
    """Every error response: what went wrong and the request id to quote."""

    error: ErrorBody
    request_id: str
