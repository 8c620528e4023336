"""The retrieval stage's shared types: what a source is fitted on, what it is asked, what it returns.

* :class:`RetrievalData` — everything a source may learn from, index-aligned with the engine's
  ``IdMap``s (row ``i`` of ``items`` is item index ``i``).
* :class:`RetrievalQuery` — a batch of users at request time: their *current* histories (training
  plus fresh events), recent items newest first, segments, onboarding interests and the time.
* :class:`Candidates` — one user's candidates from one source: item indices, scores, and a reason
  code plus an anchor item (for "because you watched <title>") per candidate.
* :class:`CandidateSource` — the protocol: estimator-style ``fit``, batch-first ``retrieve``,
  versioned ``save``/``load``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, Self, runtime_checkable

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from funnel.core.interactions import Interactions


@dataclass
class RetrievalData:
    """Training input of every source.

    Attributes:
        interactions: all interactions, indexed (user_idx, item_idx, timestamp ms, type, value).
        X: binary positive user×item matrix (``interactions.to_csr()``).
        items: catalogue in item-index order (``funnel.core.schema.ITEMS`` columns; rows of items
            seen only in interactions are null except ``item_id``).
        users: users in user-index order (``funnel.core.schema.USERS`` columns, same convention).
        now_ms: the reference time of training (e.g. the last event's timestamp).
    """

    interactions: Interactions
    X: sp.csr_matrix
    items: pa.Table
    users: pa.Table
    now_ms: int


@dataclass
class RetrievalQuery:
    """A batch of users to retrieve for. Lists are one entry per user, in order.

    Attributes:
        user_ids: external user ids.
        histories: binary ``n_users × n_items`` matrix of each user's current positive history.
        recent: per user, item indices of recent positive events, newest first (may be empty).
        segments: per user, attributes such as ``country``, ``age_bucket``, ``device``.
        interests: per user, onboarding picks as item indices (may be empty).
        interest_categories: per user, onboarding picks as category names (may be empty).
        recent_ms: per user, the epoch-ms times of ``recent`` (same order; may be empty when unknown).
        now_ms: request time, epoch ms.
    """

    user_ids: list[str]
    histories: sp.csr_matrix
    recent: list[np.ndarray]
    segments: list[dict[str, str]]
    now_ms: int
    interests: list[np.ndarray] = field(default_factory=list)
    interest_categories: list[list[str]] = field(default_factory=list)
    recent_ms: list[np.ndarray] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.user_ids)

    def batch(self, start: int, stop: int) -> RetrievalQuery:
        """Users ``start:stop`` of this query (every per-user list cut alike).

        >>> recent = [np.array([1]), np.array([2])]
        >>> q = RetrievalQuery(["a", "b"], sp.csr_matrix((2, 3), dtype="float32"), recent,
        ...                    [{}, {"country": "FR"}], 0)
        >>> q.batch(1, 2).user_ids, q.batch(1, 2).segments, q.batch(1, 2).histories.shape
        (['b'], [{'country': 'FR'}], (1, 3))
        """
        cut = slice(start, stop)
        return RetrievalQuery(
            self.user_ids[cut],
            self.histories[cut],
            self.recent[cut],
            self.segments[cut],
            self.now_ms,
            self.interests[cut],
            self.interest_categories[cut],
            self.recent_ms[cut],
        )

    def narrowed(self, n_items: int) -> RetrievalQuery:
        """The query for a source that knows only items ``0..n_items-1`` (newer items cut out).

        >>> q = RetrievalQuery(["a"], sp.csr_matrix(np.array([[1, 0, 1]], "float32")), [np.array([2, 0])],
        ...                    [{}], 0, recent_ms=[np.array([9, 8])])
        >>> n = q.narrowed(2)
        >>> n.histories.shape, n.recent[0].tolist(), n.recent_ms[0].tolist()
        ((1, 2), [0], [8])
        """
        if self.histories.shape[1] <= n_items:
            return self
        keep = [r < n_items for r in self.recent]
        return RetrievalQuery(
            self.user_ids,
            self.histories.tocsr()[:, :n_items],
            [r[k] for r, k in zip(self.recent, keep, strict=True)],
            self.segments,
            self.now_ms,
            [i[i < n_items] for i in self.interests],
            self.interest_categories,
            [t[k] if len(t) == len(k) else t for t, k in zip(self.recent_ms, keep, strict=False)],
        )


@runtime_checkable
class GrowsCatalogue(Protocol):
    """Optional capability of a source: take new catalogue items without refitting.

    Sources without it are asked with :meth:`RetrievalQuery.narrowed` queries (the catalogue
    they were fitted on) until the next training.
    """

    def add_items(self, items: pa.Table, indices: np.ndarray) -> None:
        """Index catalogue rows ``items`` as item ``indices`` (new, or updated)."""
        ...


@runtime_checkable
class AskedInline(Protocol):
    """Optional capability of a source: ``retrieve`` only reads in-memory tables (no ANN scan, no I/O).

    The serving fan-out (:func:`~funnel.retrieval.concurrent.ask_all`) runs such a source in the
    request's own thread after the pooled ones (ANN searches) have answered. Running every source
    in the pool at once made them contend for the GIL: at 1M items the five default sources cost
    6.35 ms of CPU a request that way against 5.73 ms one after the other; with the cheap four
    asked inline afterwards, 5.92 ms. Its answer is still dropped when it comes after the deadline.
    """

    asked_inline: bool


@dataclass
class Candidates:
    """One user's candidates from one source, best first.

    Attributes:
        items: ``int32`` item indices (no duplicates, no -1).
        scores: ``float32`` source scores, same length (higher is better; scales differ by source).
        reason: a reason code per candidate (e.g. ``because_you_watched``, ``trending``).
        anchor: ``int32`` item index the reason refers to, ``-1`` when none.
    """

    items: np.ndarray
    scores: np.ndarray
    reason: np.ndarray
    anchor: np.ndarray

    @classmethod
    def empty(cls) -> Candidates:
        """No candidates."""
        return cls(
            np.empty(0, np.int32), np.empty(0, np.float32), np.empty(0, dtype=object), np.empty(0, np.int32)
        )

    def __len__(self) -> int:
        return len(self.items)


@runtime_checkable
class CandidateSource(Protocol):
    """A retrieval source: ``fit`` on :class:`RetrievalData`, ``retrieve`` for a query batch."""

    name: str

    def fit(self, data: RetrievalData) -> Self:
        """Learn from ``data``; returns self."""
        ...

    def retrieve(self, query: RetrievalQuery, k: int) -> list[Candidates]:
        """Up to ``k`` candidates per user of ``query`` (seen items excluded), best first."""
        ...

    def save(self, folder: str | Path) -> None:
        """Persist to ``folder`` with a format version (no pickle)."""
        ...

    @classmethod
    def load(cls, folder: str | Path) -> Self:
        """Read a source written by :meth:`save`."""
        ...
