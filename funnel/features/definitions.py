"""Declarative feature definitions: what each feature aggregates, and the counters behind them.

A :class:`FeatureDef` names an entity, a source, an aggregation, a window and a TTL. Counting
aggregations are backed by *counters* (``"<amount>.<events>"``, e.g. ``n.click``: one per click;
``v.rating``: the rating value) kept per time bucket (see :mod:`funnel.features.windows`). The
offline path (DuckDB) and the online path (bucket hashes) both reduce to the same mapping
``{(counter, sub, window): sum}``; :func:`~funnel.features.vectors.compute` derives every
feature from it, so the derivation itself can never skew.

Entities: ``user``, ``item``, ``user_category`` / ``user_creator`` (evaluated for a user and a
candidate item: the max over the item's categories, resp. its creator), ``user_item``.
Aggregations: ``count``, ``sum``, ``mean`` (value sum / valued-event count), ``ratio`` (``of``:
numerator and denominator feature; 0 when the denominator is 0), ``distinct_count`` (items with a
positive count in the window), ``last_n`` (the user's ``n`` most recent distinct items, newest
first, ties by item id), ``exists`` (1 if the count is positive), ``age_days`` (catalogue
``published_at`` to ``t`` in days; -1 when unknown).

Example:
    >>> f = FEATURES_BY_NAME["item_ctr_24h"]
    >>> f.entity, f.aggregation, f.of
    ('item', 'ratio', ('item_clicks_24h', 'item_impressions_24h'))
    >>> len(FEATURE_VERSION)
    12
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from funnel.core.schema import EVENT_TYPES, NEGATIVE_TYPES
from funnel.features.windows import LIFETIME, WINDOWS

POSITIVE = tuple(t for t in EVENT_TYPES if t not in NEGATIVE_TYPES)
"""Event types that count as engagement (the ``positive`` event set)."""
EVENT_SETS: dict[str, tuple[str, ...]] = {"positive": POSITIVE, "all": EVENT_TYPES}
EVENT_SETS.update({t: (t,) for t in EVENT_TYPES})
GROUPS = {"user": "act", "item": "stats", "user_category": "cat", "user_creator": "creator"}
GROUPS.update({"user_item": "items"})
"""Online hash group of each entity's counters (lifetime user/item counters go to ``life``)."""


def group_of(entity: str, window: str) -> str:
    """The online hash group of an entity's counters for ``window``."""
    return "life" if entity in ("user", "item") and window == LIFETIME else GROUPS.get(entity, "")


INT_AGGS = frozenset({"count", "distinct_count", "exists"})


@dataclass(frozen=True, slots=True)
class FeatureDef:
    """One feature: what it aggregates, over which entity, source and window, kept how long."""

    name: str
    entity: str
    source: str
    aggregation: str
    window: str = LIFETIME
    events: str = "all"
    of: tuple[str, ...] = ()
    n: int = 0
    ttl_s: int | None = None

    @property
    def counter(self) -> str | None:
        """The bucketed counter behind this feature (None for derived aggregations)."""
        if self.aggregation in ("count", "exists", "distinct_count"):
            return f"n.{self.events}" if self.source == "interactions" else "n.imp"
        if self.aggregation == "sum":
            return f"v.{self.events}"
        return None

    @property
    def dtype(self) -> str:
        """``int``, ``float`` or ``list``."""
        return "list" if self.aggregation == "last_n" else "int" if self.aggregation in INT_AGGS else "float"

    def group(self) -> str:
        """The online hash group its counters live in."""
        return group_of(self.entity, self.window)

    def key_ttl_s(self) -> int | None:
        """TTL of the keys holding it: explicit, or derived from its window."""
        return self.ttl_s if self.ttl_s is not None else WINDOWS[self.window].ttl_s()


def _u(name: str, agg: str, window: str = LIFETIME, events: str = "all", **kw) -> FeatureDef:
    return FeatureDef(name, "user", "interactions", agg, window, events, **kw)


_W4 = ("1h", "24h", "7d", "30d")
FEATURES: tuple[FeatureDef, ...] = (
    *(
        _u(f"user_{e}_count_{w}", "count", w, e)
        for e in ("view", "click", "watch", "like", "skip")
        for w in _W4
    ),
    *(_u(f"user_positive_count_{w}", "count", w, "positive") for w in (*_W4, LIFETIME)),
    _u("user_rating_sum_30d", "sum", "30d", "rating"),
    _u("user_rating_count_30d", "count", "30d", "rating"),
    _u("user_rating_mean_30d", "mean", "30d", of=("user_rating_sum_30d", "user_rating_count_30d")),
    FeatureDef("user_distinct_items_7d", "user_item", "interactions", "distinct_count", "7d", "positive"),
    _u("user_recent_items", "last_n", events="positive", n=20),
    *(FeatureDef(f"item_impressions_{w}", "item", "impressions", "count", w) for w in ("24h", "7d")),
    *(FeatureDef(f"item_clicks_{w}", "item", "interactions", "count", w, "click") for w in ("24h", "7d")),
    *(
        FeatureDef(
            f"item_ctr_{w}",
            "item",
            "impressions",
            "ratio",
            w,
            of=(f"item_clicks_{w}", f"item_impressions_{w}"),
        )
        for w in ("24h", "7d")
    ),
    *(
        FeatureDef(f"item_popularity_{w}", "item", "interactions", "count", w, "positive")
        for w in ("1h", "24h", "7d")
    ),
    FeatureDef("item_age_days", "item", "catalog", "age_days"),
    *(
        FeatureDef(f"ux_category_count_{w}", "user_category", "interactions", "count", w, "positive")
        for w in ("7d", "30d")
    ),
    FeatureDef("ux_category_engaged", "user_category", "interactions", "exists", LIFETIME, "positive"),
    FeatureDef(
        "ux_category_affinity_30d",
        "user_category",
        "interactions",
        "ratio",
        "30d",
        of=("ux_category_count_30d", "user_positive_count_30d"),
    ),
    *(
        FeatureDef(f"ux_creator_count_{w}", "user_creator", "interactions", "count", w, "positive")
        for w in ("7d", "30d")
    ),
    FeatureDef(
        "ux_creator_affinity_30d",
        "user_creator",
        "interactions",
        "ratio",
        "30d",
        of=("ux_creator_count_30d", "user_positive_count_30d"),
    ),
    FeatureDef("ux_creator_engaged", "user_creator", "interactions", "exists", LIFETIME, "positive"),
    FeatureDef("ux_item_count_7d", "user_item", "interactions", "count", "7d", "positive"),
)
"""The features the ranker needs (user activity, affinities, recent items, item popularity/CTR/age,
user x item crosses)."""
FEATURES_BY_NAME: dict[str, FeatureDef] = {f.name: f for f in FEATURES}
"""``FEATURES`` by name."""


def feature_version(defs: Sequence[FeatureDef] = FEATURES) -> str:
    """A 12-hex digest of the definitions and window table (changes with any definition)."""
    body = {"defs": [asdict(f) for f in defs], "windows": {k: asdict(w) for k, w in WINDOWS.items()}}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:12]


FEATURE_VERSION = feature_version()
"""Version of :data:`FEATURES`, recorded by the model registry next to a model."""


@dataclass(frozen=True, slots=True)
class CounterSpec:
    """One bucketed counter an event source feeds: ``(entity, counter) -> windows``."""

    entity: str
    counter: str
    events: tuple[str, ...]
    windows: tuple[str, ...]

    def group(self, window: str) -> str:
        """The hash group of this counter's ``window`` buckets."""
        return group_of(self.entity, window)


def counter_specs(defs: Sequence[FeatureDef] = FEATURES) -> dict[str, list[CounterSpec]]:
    """The counters to maintain, by source (``interactions``, ``impressions``)."""
    acc: dict[tuple[str, str, str, str], set[str]] = {}
    for f in defs:
        c = f.counter
        if c is None:
            continue
        src = "interactions" if c != "n.imp" else "impressions"
        acc.setdefault((src, f.entity, c, f.events), set()).add(f.window)
    out: dict[str, list[CounterSpec]] = {"interactions": [], "impressions": []}
    for (src, entity, c, events), windows in sorted(acc.items()):
        out[src].append(CounterSpec(entity, c, EVENT_SETS[events], tuple(sorted(windows))))
    return out


def item_columns(defs: Sequence[FeatureDef] = FEATURES) -> list[tuple[str, str, str]]:
    """The ``(group, counter, window)`` columns of the item matrix :func:`compute` takes."""
    return sorted({(f.group(), f.counter, f.window) for f in defs if f.entity == "item" and f.counter})


def last_n(recent: Mapping[str, int], t: int, n: int) -> list[str]:
    """The ``n`` most recent items with a timestamp before ``t``: newest first, ties by item id."""
    before = [(ts, item) for item, ts in recent.items() if ts < t]
    before.sort(reverse=True)
    return [item for _, item in before[:n]]
