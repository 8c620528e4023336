"""Hard filters: what the user has seen or rejected, and what policy forbids them to see.

* :class:`SeenFilter` — consumed items (``mode="exclude"``: removed; ``mode="decay"``: kept with
  their score scaled by ``decay``, recovering linearly to full over ``recovery_days`` after
  consumption when the times are known — for re-watchable catalogues), items and creators marked
  "not interested", and items shown on earlier pages (``request.shown``). Everything but
  decayed re-shows is removed.
* :class:`PolicyFilter` — unlisted items, items rated above the user's age, items not licensed in
  the user's country, ``request.exclude`` and the ``request.categories`` filter.

A user's age is the first number of their age bucket (``"13-17"`` → 13, ``"55+"`` → 55); an
unknown bucket counts as ``unknown_age_years`` (default 0: only ``"all"`` items), so an unknown
age never unlocks rated content.

Example:
    >>> from funnel.rerank.context import PageRequest, Slate, UserContext
    >>> from funnel.rerank.items import ItemPolicyTable
    >>> import pyarrow as pa
    >>> table = ItemPolicyTable.from_catalogue(pa.table({"item_id": ["a", "b", "c"],
    ...     "attributes": [None, '{"age_rating": "18+"}', None]}))
    >>> st = RerankState.start(table, Slate(np.array([0, 1, 2]), np.ones(3)),
    ...                UserContext(seen=[2], age_bucket="13-17"), PageRequest(k=2))
    >>> SeenFilter().prepare(st); PolicyFilter().prepare(st)
    >>> st.alive.tolist(), st.traces["seen"].removed, st.traces["policy"].removed_reason
    ([True, False, False], [2], ['age'])
"""

from __future__ import annotations

import re

import numpy as np

from funnel.core.errors import ConfigError
from funnel.rerank.items import ItemPolicyTable
from funnel.rerank.state import BaseStep, RerankState, scale
from funnel.retrieval.sources.common import member

DAY_MS = 86_400_000
SEEN_MODES = ("exclude", "decay")
_FIRST_NUMBER = re.compile(r"\d+")


def age_years(bucket: str | None, unknown: int = 0) -> int:
    """The youngest age in an age bucket (``"18-24"`` → 18), ``unknown`` when there is no number."""
    match = _FIRST_NUMBER.search(bucket) if bucket else None
    return int(match.group(0)) if match else unknown


def policy_ok(
    table: ItemPolicyTable,
    items: np.ndarray,
    age_bucket: str | None,
    country: str | None,
    unknown_age: int = 0,
) -> np.ndarray:
    """``bool`` per item: listed, allowed at the user's age and licensed in their country.

    The item-side hard policy of :class:`PolicyFilter`, for callers that need eligibility without
    a page (e.g. scoring against an oracle restricted to what a user may be shown).
    """
    return (
        table.listed[items]
        & (table.min_age[items] <= age_years(age_bucket, unknown_age))
        & table.region_ok(items, country)
    )


class SeenFilter(BaseStep):
    """Removes seen (or decays them), not-interested and already-shown items.

    Args:
        mode: ``"exclude"`` or ``"decay"`` for consumed items.
        decay: score factor of a just-consumed item in ``"decay"`` mode (in ``(0, 1]``).
        recovery_days: days after which a consumed item's score is back to full (``0``: never).
    """

    name = "seen"

    def __init__(self, mode: str = "exclude", decay: float = 0.3, recovery_days: float = 30.0) -> None:
        if mode not in SEEN_MODES:
            raise ConfigError(f"seen mode must be one of {SEEN_MODES}, got {mode!r}")
        if not 0 < decay <= 1 or recovery_days < 0:
            raise ConfigError("seen decay must be in (0, 1] and recovery_days >= 0")
        self.mode, self.decay, self.recovery_days = mode, decay, recovery_days

    def prepare(self, state: RerankState) -> None:
        """Filter (and in ``decay`` mode rescore) the candidates."""
        items, user = state.items, state.user
        state.remove(self.name, state.contains(user.not_interested), "not_interested")
        if len(user.not_interested_creators):
            creators = state.table.creator[items]
            state.remove(self.name, member(creators, user.not_interested_creators), "not_interested_creator")
        state.remove(self.name, state.contains(state.request.shown), "shown")
        seen = state.contains(user.seen)
        if self.mode == "exclude":
            state.remove(self.name, seen, "seen")
        elif seen.any():
            factor = np.full(int(seen.sum()), self.decay)
            if user.seen_ms is not None and self.recovery_days > 0:
                order = np.lexsort((user.seen_ms, user.seen))  # last time per item comes last
                keys, times = user.seen[order], user.seen_ms[order]
                last = np.searchsorted(keys, items[seen], side="right") - 1
                age = np.maximum(state.now_ms() - times[last], 0) / DAY_MS
                factor = self.decay + (1 - self.decay) * np.minimum(age / self.recovery_days, 1.0)
            idx = np.flatnonzero(seen)
            state.score[idx] = scale(state.score[idx], factor)
            state.trace(self.name).rescored.extend(state.items[idx].tolist())


class PolicyFilter(BaseStep):
    """Removes unlisted, age-restricted, unlicensed, excluded and out-of-filter items.

    Args:
        unknown_age_years: the age assumed when the user's age bucket is unknown.
    """

    name = "policy"

    def __init__(self, unknown_age_years: int = 0) -> None:
        self.unknown_age_years = unknown_age_years

    def prepare(self, state: RerankState) -> None:
        """Clear ``state.alive`` of every candidate policy forbids."""
        t, items, user, request = state.table, state.items, state.user, state.request
        state.remove(self.name, ~t.listed[items], "unlisted")
        state.remove(self.name, t.min_age[items] > age_years(user.age_bucket, self.unknown_age_years), "age")
        state.remove(self.name, ~t.region_ok(items, user.country), "region")
        state.remove(self.name, state.contains(request.exclude), "excluded")
        if request.categories is not None:
            cats = t.categories[items]
            ok = member(cats.ravel(), request.categories).reshape(cats.shape).any(axis=1)
            state.remove(self.name, ~ok, "category")
