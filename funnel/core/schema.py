"""The data model at the boundary: items, users, interactions and impressions.

Two forms of each record share one set of rules:

* Arrow tables with the canonical schemas below (``INTERACTIONS``, ``ITEMS``, ``USERS``,
  ``IMPRESSIONS``), validated column-wise by :func:`validate_interactions` — the bulk path of the
  importers, which never holds a large file as Python objects;
* dataclasses (:class:`Interaction`, :class:`Impression`, :class:`Item`, :class:`User`) built with
  ``from_dict``, validated field by field — the path of single events (HTTP, the event log).

Timestamps are UTC epoch milliseconds (``timestamp[ms, UTC]`` in Arrow). A timestamp is valid
between :data:`MIN_TIMESTAMP_MS` (exclusive) and :data:`MAX_TIMESTAMP_MS` (exclusive); an item's
``published_at`` may go back to :data:`MIN_PUBLISHED_MS`.

Example:
    >>> ev = Interaction.from_dict({"user_id": "u1", "item_id": "i9", "type": "click",
    ...                             "timestamp": 1_700_000_000_000})
    >>> ev.type, ev.value
    ('click', None)
    >>> Interaction.from_dict({"user_id": "u1", "item_id": "i9", "type": "poke",
    ...                        "timestamp": 1_700_000_000_000}, row=3)
    Traceback (most recent call last):
    ...
    funnel.core.errors.ValidationError: type (row 3): unknown event type 'poke'; known: ...
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

import pyarrow as pa

from funnel.core.errors import ValidationError

MIN_TIMESTAMP_MS = 0
"""Exclusive lower bound for timestamps (epoch 0 usually means 'missing')."""
MAX_TIMESTAMP_MS = 4_102_444_800_000
"""Exclusive upper bound for timestamps: 2100-01-01T00:00:00Z."""
MIN_PUBLISHED_MS = -5_364_662_400_000
"""Exclusive lower bound for ``published_at``: 1800-01-01T00:00:00Z (catalogues hold old films)."""


class EventType(StrEnum):
    """The interaction types funnel understands."""

    VIEW = "view"
    CLICK = "click"
    WATCH = "watch"
    LIKE = "like"
    RATING = "rating"
    PURCHASE = "purchase"
    SKIP = "skip"
    NOT_INTERESTED = "not_interested"
    SHARE = "share"
    SAVE = "save"
    DISLIKE = "dislike"


EVENT_TYPES: tuple[str, ...] = tuple(t.value for t in EventType)
"""Event type names in code order: ``EVENT_TYPES[code]`` is the name of type ``code``."""
EVENT_CODE: dict[str, int] = {name: i for i, name in enumerate(EVENT_TYPES)}
"""Event type name -> small integer code (stable: new types are only ever appended)."""
NEGATIVE_TYPES = frozenset({EventType.SKIP, EventType.NOT_INTERESTED, EventType.DISLIKE})
"""Types that express a lack of interest; everything else counts as positive implicit feedback."""

TIMESTAMP = pa.timestamp("ms", tz="UTC")

INTERACTIONS = pa.schema(
    [
        pa.field("event_id", pa.string()),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("timestamp", TIMESTAMP, nullable=False),
        pa.field("type", pa.string(), nullable=False),
        pa.field("value", pa.float64()),
        pa.field("request_id", pa.string()),
        pa.field("position", pa.int32()),
    ]
)
"""Canonical interactions table. ``value``: rating, dwell seconds or completion ratio."""

ITEMS = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("title", pa.string()),
        pa.field("description", pa.string()),
        pa.field("categories", pa.list_(pa.string())),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("creator_id", pa.string()),
        pa.field("published_at", TIMESTAMP),
        pa.field("status", pa.string()),
        pa.field("attributes", pa.string()),
    ]
)
"""Canonical catalogue table; ``attributes`` is a JSON object (age_rating, regions, sponsored...)."""

USERS = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("created_at", TIMESTAMP),
        pa.field("attributes", pa.string()),
    ]
)
"""Canonical users table; ``attributes`` is a JSON object (country, language, age_bucket...)."""

IMPRESSIONS = pa.schema(
    [
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("item_ids", pa.list_(pa.string()), nullable=False),
        pa.field("positions", pa.list_(pa.int32()), nullable=False),
        pa.field("timestamp", TIMESTAMP, nullable=False),
        pa.field("surface", pa.string()),
        pa.field("arm", pa.string()),
    ]
)
"""Canonical impressions table: one row per served page."""

ITEM_STATUSES = ("listed", "unlisted")


def _require_id(data: dict[str, Any], name: str, row: int | None) -> str:
    value = data.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValidationError("is required", field=name, row=row)
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValidationError(f"must be a string, got {type(value).__name__}", field=name, row=row)
    return str(value)


def _optional_str(data: dict[str, Any], name: str, row: int | None) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(f"must be a string, got {type(value).__name__}", field=name, row=row)
    return value


def check_timestamp(
    value: Any, row: int | None = None, name: str = "timestamp", low: int = MIN_TIMESTAMP_MS
) -> int:
    """Return ``value`` as epoch ms after checking type and range (``low``, MAX); raise otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError("must be epoch milliseconds (a number)", field=name, row=row)
    if not math.isfinite(value):
        raise ValidationError("must be finite", field=name, row=row)
    ms = int(value)
    if not low < ms < MAX_TIMESTAMP_MS:
        after = "1800-01-01" if low == MIN_PUBLISHED_MS else "1970-01-01"
        raise ValidationError(
            f"{ms} is out of range (epoch ms after {after} and before 2100-01-01)",
            field=name,
            row=row,
        )
    return ms


def check_event_type(value: Any, row: int | None = None, name: str = "type") -> str:
    """Return ``value`` if it is a known event type; raise ``ValidationError`` otherwise."""
    if value not in EVENT_CODE:
        raise ValidationError(
            f"unknown event type {value!r}; known: {', '.join(EVENT_TYPES)}", field=name, row=row
        )
    return str(value)


def check_value(value: Any, row: int | None = None, name: str = "value") -> float | None:
    """Return ``value`` as a finite float (or None); raise ``ValidationError`` otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationError("must be a number", field=name, row=row)
    if not math.isfinite(value):
        raise ValidationError("must be finite", field=name, row=row)
    return float(value)


@dataclass(frozen=True, slots=True)
class Interaction:
    """One user action on one item (see DESIGN.md, Data model)."""

    user_id: str
    item_id: str
    type: str
    timestamp: int
    value: float | None = None
    event_id: str | None = None
    request_id: str | None = None
    position: int | None = None
    context: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any], row: int | None = None) -> Interaction:
        """Validate a mapping (JSON body, CSV row) and build the interaction."""
        position = data.get("position")
        if position is not None and (
            isinstance(position, bool) or not isinstance(position, int) or position < 0
        ):
            raise ValidationError("must be a non-negative integer", field="position", row=row)
        context = data.get("context") or {}
        if not isinstance(context, dict):
            raise ValidationError("must be an object", field="context", row=row)
        return cls(
            user_id=_require_id(data, "user_id", row),
            item_id=_require_id(data, "item_id", row),
            type=check_event_type(data.get("type"), row),
            timestamp=check_timestamp(data.get("timestamp"), row),
            value=check_value(data.get("value"), row),
            event_id=_optional_str(data, "event_id", row),
            request_id=_optional_str(data, "request_id", row),
            position=position,
            context={str(k): str(v) for k, v in context.items()},
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON-ready); ``from_dict(to_dict())`` round-trips."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class Impression:
    """One served page: which items a user was shown, at which positions.

    ``propensities`` and ``sources`` are optional per-item lists echoed from the response: the
    probability each item had of its slot (exploration), and what produced it (the response's
    ``reason_code``, or a retrieval source name), which monitoring attributes clicks to.
    ``experiment`` and ``arm``: the running experiment and the arm the page was served under
    (:mod:`funnel.experiments.exposure` joins clicks to arms through them).
    """

    request_id: str
    user_id: str
    item_ids: tuple[str, ...]
    positions: tuple[int, ...]
    timestamp: int
    surface: str | None = None
    arm: str | None = None
    experiment: str | None = None
    propensities: tuple[float, ...] | None = None
    sources: tuple[str, ...] | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any], row: int | None = None) -> Impression:
        """Validate a mapping and build the impression."""
        items = data.get("item_ids")
        if not isinstance(items, list | tuple) or not items:
            raise ValidationError("must be a non-empty list of item ids", field="item_ids", row=row)
        if not all(isinstance(i, str) and i for i in items):
            raise ValidationError("must contain non-empty strings", field="item_ids", row=row)
        positions = data.get("positions", list(range(len(items))))
        if not isinstance(positions, list | tuple) or len(positions) != len(items):
            raise ValidationError("must list one position per item", field="positions", row=row)
        if not all(isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in positions):
            raise ValidationError("must be non-negative integers", field="positions", row=row)
        props = data.get("propensities")
        if props is not None:
            if not isinstance(props, list | tuple) or len(props) != len(items):
                raise ValidationError("must give one per item", field="propensities", row=row)
            for p in props:
                v = check_value(p, row, "propensities")
                if v is None or not 0.0 < v <= 1.0:
                    raise ValidationError("must be in (0, 1]", field="propensities", row=row)
        sources = data.get("sources")
        if sources is not None:
            if not isinstance(sources, list | tuple) or len(sources) != len(items):
                raise ValidationError("must give one per item", field="sources", row=row)
            if not all(isinstance(x, str) and x for x in sources):
                raise ValidationError("must contain non-empty strings", field="sources", row=row)
        return cls(
            request_id=_require_id(data, "request_id", row),
            user_id=_require_id(data, "user_id", row),
            item_ids=tuple(items),
            positions=tuple(positions),
            timestamp=check_timestamp(data.get("timestamp"), row),
            surface=_optional_str(data, "surface", row),
            arm=_optional_str(data, "arm", row),
            experiment=_optional_str(data, "experiment", row),
            propensities=tuple(float(p) for p in props) if props is not None else None,
            sources=tuple(sources) if sources is not None else None,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON-ready)."""
        out = asdict(self)
        out["item_ids"], out["positions"] = list(self.item_ids), list(self.positions)
        if self.propensities is not None:
            out["propensities"] = list(self.propensities)
        if self.sources is not None:
            out["sources"] = list(self.sources)
        return out


@dataclass(frozen=True, slots=True)
class Item:
    """A catalogue entry."""

    item_id: str
    title: str | None = None
    description: str | None = None
    categories: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    creator_id: str | None = None
    published_at: int | None = None
    status: str = "listed"
    attributes: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any], row: int | None = None) -> Item:
        """Validate a mapping and build the item."""
        status = data.get("status") or "listed"
        if status not in ITEM_STATUSES:
            raise ValidationError(f"must be one of {ITEM_STATUSES}", field="status", row=row)
        published = data.get("published_at")
        attrs = data.get("attributes") or {}
        if not isinstance(attrs, dict):
            raise ValidationError("must be an object", field="attributes", row=row)
        return cls(
            item_id=_require_id(data, "item_id", row),
            title=_optional_str(data, "title", row),
            description=_optional_str(data, "description", row),
            categories=_str_list(data, "categories", row),
            tags=_str_list(data, "tags", row),
            creator_id=_optional_str(data, "creator_id", row),
            published_at=None
            if published is None
            else check_timestamp(published, row, "published_at", MIN_PUBLISHED_MS),
            status=status,
            attributes=attrs,
        )


@dataclass(frozen=True, slots=True)
class User:
    """A user with free-form attributes (country, language, age_bucket, ...)."""

    user_id: str
    created_at: int | None = None
    attributes: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any], row: int | None = None) -> User:
        """Validate a mapping and build the user."""
        created = data.get("created_at")
        attrs = data.get("attributes") or {}
        if not isinstance(attrs, dict):
            raise ValidationError("must be an object", field="attributes", row=row)
        return cls(
            user_id=_require_id(data, "user_id", row),
            created_at=None if created is None else check_timestamp(created, row, "created_at"),
            attributes=attrs,
        )


def _str_list(data: dict[str, Any], name: str, row: int | None) -> tuple[str, ...]:
    value = data.get(name) or ()
    if isinstance(value, str):
        value = [value]
    if not all(isinstance(v, str) for v in value):
        raise ValidationError("must be a list of strings", field=name, row=row)
    return tuple(value)
