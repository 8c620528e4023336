"""``trending``: time-decayed popularity, overall and per user segment (country, age bucket, …).

Each positive event weighs ``0.5 ** (age / half_life)`` with its age taken at ``data.now_ms``
(events after it count fully). An item's score is its *share* of the decayed attention — overall,
and within each segment value (``country=US``, ``age_bucket=18-24``, read from the users'
``attributes`` JSON). Exponential decay is memoryless, so a later ``query.now_ms`` scales every
score alike and leaves the ranking of the fitted events unchanged; fresher counts need a refit (or
the streaming updater). A user gets the union of the overall list and the lists of their segments
(``query.segments``), each item scored by its best share; reason ``popular_in_segment`` when that
came from a segment, else ``trending``. Only the ``max_items`` best of each list are kept.

Example:
    >>> import pyarrow as pa, scipy.sparse as sp
    >>> from funnel.retrieval.sources.common import retrieval_data
    >>> from funnel.retrieval.source import RetrievalQuery
    >>> t = pa.table({"user_id": ["a", "b", "c"], "item_id": ["x", "y", "y"], "timestamp": [1, 2, 3]})
    >>> src = TrendingSource().fit(retrieval_data(t))
    >>> got = src.retrieve(RetrievalQuery(["new"], sp.csr_matrix((1, 2)), [np.array([])], [{}], 3), 5)[0]
    >>> got.items.tolist(), got.reason.tolist()
    ([1, 0], ['trending', 'trending'])
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np

from funnel.core.arrays import object_full
from funnel.retrieval.source import Candidates, RetrievalData, RetrievalQuery
from funnel.retrieval.sources.common import BaseSource, candidates, member, seen_of, user_attributes

DAY_MS = 86_400_000


def _top(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` best positive entries of ``scores`` as shares of their sum, best first."""
    total = scores.sum()
    idx = np.flatnonzero(scores > 0)
    if len(idx) > n:
        idx = idx[np.argpartition(-scores[idx], n - 1)[:n]]
    idx = idx[np.argsort(-scores[idx], kind="stable")]
    return idx.astype(np.int32), (scores[idx] / max(total, 1e-12)).astype(np.float32)


class TrendingSource(BaseSource):
    """Time-decayed popularity candidates, overall and per segment.

    Args:
        half_life_days: an event's weight halves every this many days.
        segment_fields: user attributes defining segments.
        max_items: items kept per list (overall and each segment).
        segment_boost: multiplies segment shares before comparing with the overall share.

    Attributes:
        items_, scores_: the overall list (``int32``, ``float32`` shares), best first.
        segment_keys_: ``"field=value"`` per segment; ``segment_items_``/``segment_scores_`` are
            ``[n_segments, max_items]`` (padded with ``-1`` / ``0``).
    """

    name = "trending"
    asked_inline = True  # in-memory tables only (AskedInline)

    def __init__(
        self,
        half_life_days: float = 7.0,
        segment_fields: tuple[str, ...] | list[str] = ("country", "age_bucket"),
        max_items: int = 2000,
        segment_boost: float = 1.0,
    ) -> None:
        self.half_life_days = half_life_days
        self.segment_fields = list(segment_fields)
        self.max_items = max_items
        self.segment_boost = segment_boost

    def fit(self, data: RetrievalData) -> Self:
        """Decay every positive event to ``data.now_ms`` and rank items overall and per segment."""
        inter = data.interactions
        pos = inter.positive_mask()
        users, items = inter.user_idx[pos], inter.item_idx[pos]
        age = np.maximum(data.now_ms - inter.timestamp[pos], 0).astype(np.float64)
        w = 0.5 ** (age / (self.half_life_days * DAY_MS))
        m = data.X.shape[1]
        self.items_, self.scores_ = _top(np.bincount(items, w, minlength=m), self.max_items)
        keys, seg_items, seg_scores = [], [], []
        attrs = user_attributes(data.users, tuple(self.segment_fields))
        for field in self.segment_fields:
            values, codes = np.unique(attrs[field].astype(str), return_inverse=True)
            event_codes = codes[users].astype(np.int64)
            mass = np.bincount(event_codes * m + items, w, minlength=len(values) * m).reshape(len(values), m)
            for v, value in enumerate(values.tolist()):
                if not value:
                    continue
                top_i, top_s = _top(mass[v], self.max_items)
                keys.append(f"{field}={value}")
                seg_items.append(np.pad(top_i, (0, self.max_items - len(top_i)), constant_values=-1))
                seg_scores.append(np.pad(top_s, (0, self.max_items - len(top_s))))
        self.segment_keys_ = np.asarray(keys, dtype=str)
        shape = (len(keys), self.max_items)
        self.segment_items_ = np.asarray(seg_items, np.int32).reshape(shape)
        self.segment_scores_ = np.asarray(seg_scores, np.float32).reshape(shape)
        self.n_items_ = m
        self._ranked_cache: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        return self

    def _ranked(self, rows: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The union list of the overall ranking and segment rows ``rows``: items, scores, reasons."""
        if not rows:
            return self.items_, self.scores_, object_full(len(self.items_), "trending")
        items = np.concatenate([self.items_, self.segment_items_[list(rows)].ravel()])
        scores = np.concatenate([self.scores_, self.segment_boost * self.segment_scores_[list(rows)].ravel()])
        from_seg = np.arange(len(items)) >= len(self.items_)
        ok = items >= 0
        items, scores, from_seg = items[ok], scores[ok], from_seg[ok]
        order = np.lexsort((-scores, items))
        items, scores, from_seg = items[order], scores[order], from_seg[order]
        first = np.ones(len(items), dtype=bool)
        first[1:] = items[1:] != items[:-1]
        items, scores, from_seg = items[first], scores[first], from_seg[first]
        order = np.argsort(-scores, kind="stable")
        reasons = np.where(from_seg[order], "popular_in_segment", "trending").astype(object)
        return items[order], scores[order], reasons

    def retrieve(self, query: RetrievalQuery, k: int) -> list[Candidates]:
        """Up to ``k`` trending items per user (their segments included), seen items excluded."""
        self._check(query, k)
        H = query.histories.tocsr()
        index = {key: i for i, key in enumerate(self.segment_keys_.tolist())}
        cache = self.__dict__.setdefault("_ranked_cache", {})  # per segment combination, across calls
        if len(cache) > 4096:
            cache.clear()
        out = []
        for u in range(len(query)):
            seg = query.segments[u] if u < len(query.segments) else {}
            rows = tuple(
                sorted(index[key] for f in self.segment_fields if (key := f"{f}={seg.get(f)}") in index)
            )
            if rows not in cache:
                cache[rows] = self._ranked(rows)
            items, scores, reasons = cache[rows]
            seen = seen_of(H, u)
            idx = np.flatnonzero(~member(items[: k + len(seen)], seen))[:k]
            out.append(candidates(items[idx], scores[idx], reasons[idx]))
        return out

    def _state(self) -> dict[str, Any]:
        return {
            "items": self.items_,
            "scores": self.scores_,
            "segment_keys": self.segment_keys_,
            "segment_items": self.segment_items_,
            "segment_scores": self.segment_scores_,
        }

    def _set_state(self, arrays: dict[str, Any], meta: dict[str, Any]) -> None:
        self.items_, self.scores_ = arrays["items"], arrays["scores"]
        self.segment_keys_ = arrays["segment_keys"].astype(str)
        self.segment_items_, self.segment_scores_ = arrays["segment_items"], arrays["segment_scores"]
        self._ranked_cache = {}
