"""``new_items``: recently published items, by recency or by early engagement. Reason ``new``.

An item is new at time ``now`` (``query.now_ms``) when its ``published_at`` lies in
``(now - window_days, now]``. With ``rank_by="recency"`` the score is ``1 - age / window`` (the
newest first); with ``"engagement"`` it is ``log1p(distinct users at fit time) + 1 - age / window``
so early traction ranks first and recency breaks ties. Unlisted items are never returned.

Example:
    >>> import pyarrow as pa
    >>> from funnel.retrieval.sources.common import retrieval_data
    >>> from funnel.retrieval.source import RetrievalQuery
    >>> t = pa.table({"user_id": ["a"], "item_id": ["x"], "timestamp": [10 * DAY_MS]})
    >>> items = pa.table({"item_id": ["x", "y"],
    ...                   "published_at": pa.array([9 * DAY_MS, 1 * DAY_MS], pa.timestamp("ms", "UTC"))})
    >>> src = NewItemsSource(window_days=3).fit(retrieval_data(t, items))
    >>> q = RetrievalQuery(["b"], sp.csr_matrix((1, 2)), [np.array([])], [{}], 10 * DAY_MS)
    >>> src.retrieve(q, 5)[0].items.tolist()    # y is 9 days old: outside the window
    [0]
"""

from __future__ import annotations

import math
from typing import Any, Self

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from funnel.core.errors import ValidationError
from funnel.core.schema import TIMESTAMP
from funnel.retrieval.source import Candidates, RetrievalData, RetrievalQuery
from funnel.retrieval.sources.common import BaseSource, candidates, ranked_unseen, seen_of

DAY_MS = 86_400_000
REASON = "new"


def published_ms(items: pa.Table) -> np.ndarray:
    """``published_at`` as ``int64`` epoch ms, with ``INT64_MIN`` where it is null."""
    if "published_at" not in items.column_names:
        return np.full(items.num_rows, np.iinfo(np.int64).min, dtype=np.int64)
    col = items.column("published_at").cast(TIMESTAMP).cast(pa.int64())
    return np.asarray(pc.fill_null(col, np.iinfo(np.int64).min).to_numpy(), dtype=np.int64)


class NewItemsSource(BaseSource):
    """Fresh-catalogue candidates.

    Args:
        window_days: how long after publication an item counts as new.
        rank_by: ``"recency"`` or ``"engagement"``.

    Attributes:
        items_, published_, engagement_: candidate items (published within the window before
            the fit time or later), best first, with their publish time and distinct users.
    """

    name = "new_items"
    asked_inline = True  # in-memory tables only (AskedInline)

    def __init__(self, window_days: float = 30.0, rank_by: str = "recency") -> None:
        if rank_by not in ("recency", "engagement"):
            raise ValidationError(
                f"rank_by must be 'recency' or 'engagement', not {rank_by!r}", field="rank_by"
            )
        self.window_days = window_days
        self.rank_by = rank_by

    def fit(self, data: RetrievalData) -> Self:
        """Keep the items published within the window before ``data.now_ms`` (or after it)."""
        published = published_ms(data.items)
        listed = np.ones(data.items.num_rows, dtype=bool)
        if "status" in data.items.column_names:
            listed = np.asarray(pc.fill_null(pc.not_equal(data.items.column("status"), "unlisted"), True))
        window = self.window_days * DAY_MS
        keep = np.flatnonzero((published > data.now_ms - window) & listed)
        users = np.bincount(data.X.indices, minlength=data.X.shape[1])[keep].astype(np.int64)
        # the score's age term shifts every item alike as time passes: the order is fixed at fit
        key = published[keep] / window + (np.log1p(users) if self.rank_by == "engagement" else 0.0)
        order = np.lexsort((-published[keep], -key))
        self.items_ = keep[order].astype(np.int32)
        self.published_ = published[keep][order]
        self.engagement_ = users[order]
        self.n_items_ = data.X.shape[1]
        return self

    def add_items(self, items: pa.Table, indices: np.ndarray) -> None:
        """Take catalogue rows ``items`` (as item ``indices``) into the fitted order without refitting.

        Listed rows with a ``published_at`` join the ranking with no engagement yet; a row for an
        item already ranked replaces it (an unlisted update removes it).
        """
        self._check()
        indices = np.asarray(indices, np.int64)
        published = published_ms(items)
        listed = np.ones(items.num_rows, dtype=bool)
        if "status" in items.column_names:
            listed = np.asarray(pc.fill_null(pc.not_equal(items.column("status"), "unlisted"), True))
        old = ~np.isin(self.items_, indices)
        add = listed & (published > np.iinfo(np.int64).min)
        ids = np.concatenate([self.items_[old], indices[add]]).astype(np.int32)
        pub = np.concatenate([self.published_[old], published[add]])
        eng = np.concatenate([self.engagement_[old], np.zeros(int(add.sum()), np.int64)])
        window = self.window_days * DAY_MS
        key = pub / window + (np.log1p(eng) if self.rank_by == "engagement" else 0.0)
        order = np.lexsort((-pub, -key))
        self.items_, self.published_, self.engagement_ = ids[order], pub[order], eng[order]
        self.n_items_ = max(self.n_items_, int(indices.max(initial=-1)) + 1)

    def ranking(self, now_ms: int, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Items new at ``now_ms``, best first, and their scores (no sort: the order is fitted).

        With ``limit``, stops once that many are found. By recency the fitted order is newest first,
        so the new items are one slice, found by binary search: items published after ``now_ms`` (a
        data clock behind the catalogue) head the order, and scanning past them in chunks cost
        ~0.13 ms a request at 1M items. By engagement the fitted order is scanned in chunks.
        """
        window = self.window_days * DAY_MS
        if self.rank_by == "recency":
            newest_first = self._negated_published()
            # int64 bounds: a float one would convert the whole array. published > now - window
            # holds for an integer published exactly when published >= floor(now - window) + 1
            start = int(np.searchsorted(newest_first, np.int64(-now_ms), side="left"))  # <= now
            oldest = np.int64(math.floor(now_ms - window) + 1)
            end = int(np.searchsorted(newest_first, -oldest, side="right"))  # >= oldest
            idx = np.arange(start, end if limit is None else min(end, start + limit))
            score = 1.0 - (now_ms - self.published_[idx]) / window
            return self.items_[idx], score.astype(np.float32)
        n = len(self.items_)
        step = n if limit is None else max(64, 4 * limit)
        found: list[np.ndarray] = []
        count = 0
        for s in range(0, n, step):
            age = (now_ms - self.published_[s : s + step]).astype(np.float64)
            ok = np.flatnonzero((age >= 0) & (age < window))
            found.append(ok + s)
            count += len(ok)
            if limit is not None and count >= limit:
                break
        idx = np.concatenate(found) if found else np.empty(0, np.int64)
        idx = idx if limit is None else idx[:limit]
        score = 1.0 - (now_ms - self.published_[idx]) / window
        if self.rank_by == "engagement":
            score = score + np.log1p(self.engagement_[idx])
        return self.items_[idx], score.astype(np.float32)

    def _negated_published(self) -> np.ndarray:
        """``-published_`` (non-decreasing: the fitted order is newest first), kept until it changes."""
        memo = getattr(self, "_negated", None)
        if memo is None or memo[0] is not self.published_:
            memo = self._negated = (self.published_, -self.published_)
        return memo[1]

    def retrieve(self, query: RetrievalQuery, k: int) -> list[Candidates]:
        """Up to ``k`` new items per user (the same ranking for everyone), seen items excluded."""
        self._check(query, k)
        H = sp.csr_matrix(query.histories)
        most_seen = int(np.diff(H.indptr).max(initial=0))
        items, scores = self.ranking(query.now_ms, k + most_seen)
        return [
            candidates(*ranked_unseen(items, scores, seen_of(H, u), k), REASON) for u in range(len(query))
        ]

    def _state(self) -> dict[str, Any]:
        return {"items": self.items_, "published": self.published_, "engagement": self.engagement_}

    def _set_state(self, arrays: dict[str, Any], meta: dict[str, Any]) -> None:
        self.items_, self.published_ = arrays["items"], arrays["published"]
        self.engagement_ = arrays["engagement"]
