"""What flows through re-ranking: the scored :class:`Slate` in, the :class:`Page` out, and their context.

* :class:`Slate` — one user's scored candidates (item indices, scores, the retrieval reason code and
  anchor of each); :meth:`Slate.from_merged` takes a retriever's
  :class:`~funnel.retrieval.merge.MergedCandidates` and the ranker's scores.
* :class:`UserContext` — who asks: consumed items (and when), "not interested" items and creators,
  age bucket, country, cold flag.
* :class:`PageRequest` — what is asked: page size ``k``, ``exclude`` items, a category filter, the
  ``shown`` items of earlier pages (the cursor), and the time ``now_ms``.
* :class:`Page` — what comes out: items, scores, reasons, propensities, ``explored`` / ``sponsored``
  flags, and one :class:`StepTrace` per step saying what it changed.

Example:
    >>> s = Slate(np.array([4, 2]), np.array([0.9, 0.5]))
    >>> len(s), s.reason.tolist(), s.anchor.tolist()
    (2, ['picked_for_you', 'picked_for_you'], [-1, -1])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from funnel.core.arrays import object_full
from funnel.core.errors import ValidationError
from funnel.rerank.explanations import PICKED_FOR_YOU, Reason


def _ints(values: Any) -> np.ndarray:
    return np.asarray(values if values is not None else (), dtype=np.int64).ravel()


@dataclass
class Slate:
    """Scored candidates of one request, any order, no duplicate items.

    Attributes:
        items: ``int [n]`` item indices; scores: ``float [n]`` the ranker's scores (higher = better).
        reason: retrieval reason code per candidate (default ``picked_for_you``).
        anchor: ``int [n]`` item index the reason refers to, ``-1`` when none.
    """

    items: np.ndarray
    scores: np.ndarray
    reason: np.ndarray | None = None
    anchor: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.items = _ints(self.items)
        self.scores = np.asarray(self.scores, np.float64).ravel()
        n = len(self.items)
        if len(self.scores) != n:
            raise ValidationError(f"{len(self.scores)} scores for {n} items", field="scores")
        if not np.isfinite(self.scores).all():
            raise ValidationError("scores must be finite", field="scores")
        self.reason = object_full(n, PICKED_FOR_YOU) if self.reason is None else self.reason
        self.reason = np.asarray(self.reason, dtype=object)
        self.anchor = np.full(n, -1, np.int64) if self.anchor is None else _ints(self.anchor)
        if len(self.reason) != n or len(self.anchor) != n:
            raise ValidationError("reason and anchor need one entry per item", field="reason")

    def __len__(self) -> int:
        return len(self.items)

    @classmethod
    def from_merged(cls, merged: Any, scores: np.ndarray) -> Slate:
        """A slate from :class:`~funnel.retrieval.merge.MergedCandidates` and one ranker score per item."""
        return cls(merged.items, scores, merged.reason, merged.anchor)


@dataclass
class UserContext:
    """The user side of a request.

    Attributes:
        seen: item indices the user consumed; seen_ms: when (epoch ms, same order), optional.
        not_interested: items marked "not interested"; not_interested_creators: their creator codes
            (see :meth:`~funnel.rerank.items.ItemPolicyTable.creator_codes`).
        age_bucket: e.g. ``"13-17"``, ``"25-34"``, ``"55+"`` (``None`` = unknown); country: ISO code.
        cold: few or no interactions yet (explores at the cold rate).
    """

    seen: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    seen_ms: np.ndarray | None = None
    not_interested: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    not_interested_creators: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    age_bucket: str | None = None
    country: str | None = None
    cold: bool = False

    def __post_init__(self) -> None:
        self.seen = _ints(self.seen)
        self.not_interested = _ints(self.not_interested)
        self.not_interested_creators = _ints(self.not_interested_creators)
        if self.seen_ms is not None:
            self.seen_ms = _ints(self.seen_ms)
            if len(self.seen_ms) != len(self.seen):
                raise ValidationError("one time per seen item", field="seen_ms")


@dataclass
class PageRequest:
    """The request side: page size and request-level filters.

    Attributes:
        k: items wanted; exclude: item indices never to return; categories: category codes of which
            an item must have at least one (``None`` = no filter); shown: items already shown on
            earlier pages of this feed (the cursor); now_ms: request time (freshness), ``None`` = the
            newest ``published_at`` of the candidates.
    """

    k: int = 20
    exclude: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    categories: np.ndarray | None = None
    shown: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    now_ms: int | None = None

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValidationError(f"must be >= 1, got {self.k}", field="k")
        self.exclude = _ints(self.exclude)
        self.shown = _ints(self.shown)
        if self.categories is not None:
            self.categories = _ints(self.categories)


@dataclass
class StepTrace:
    """What one step changed: ``removed`` items (a reason each), ``moved``, ``inserted``, ``rescored``."""

    step: str
    removed: list[int] = field(default_factory=list)
    removed_reason: list[str] = field(default_factory=list)
    moved: list[int] = field(default_factory=list)
    inserted: list[int] = field(default_factory=list)
    rescored: list[int] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    def remove(self, items: np.ndarray, reason: str) -> None:
        """Record ``items`` as removed for ``reason``."""
        self.removed.extend(np.asarray(items).tolist())
        self.removed_reason.extend([reason] * len(items))

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON-ready)."""
        return {
            "step": self.step,
            "removed": dict(zip(self.removed, self.removed_reason, strict=True)),
            "moved": self.moved,
            "inserted": self.inserted,
            "rescored": self.rescored,
            **({"notes": self.notes} if self.notes else {}),
        }


@dataclass
class Page:
    """One served page, best first.

    Attributes:
        items: ``int64 [m]`` item indices (``m <= k``: shorter only when too few items are eligible);
        scores: the adjusted scores; reasons: a :class:`~funnel.rerank.explanations.Reason` per item;
        propensity: ``float [m]`` probability that the policy put this item at this position given
            the items above it (for off-policy evaluation; log it with the impression);
        explored / sponsored: ``bool [m]`` flags; trace: one :class:`StepTrace` per step, in order;
        fallback: set by the serving path when an earlier stage degraded (e.g. ``retrieval_order``).
    """

    items: np.ndarray
    scores: np.ndarray
    reasons: list[Reason]
    propensity: np.ndarray
    explored: np.ndarray
    sponsored: np.ndarray
    trace: list[StepTrace]
    fallback: str | None = None

    def __len__(self) -> int:
        return len(self.items)

    @property
    def reason_codes(self) -> list[str]:
        """The machine-readable reason code of each item."""
        return [r.code for r in self.reasons]
