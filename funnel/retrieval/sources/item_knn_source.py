"""``item_knn``: "because you watched X" — neighbours of the user's recent items, recency-weighted.

Fitting builds the :class:`~funnel.retrieval.item_knn.ItemKNNRecommender` top-k neighbour table.
At request time the user's recent items (``query.recent``, newest first; the history's items when
``recent`` is empty) are cut to ``n_recent``; the ``j``-th newest weighs ``recency_decay ** j``.
A candidate scores ``Σ_j w_j · sim(recent_j, item)`` and its anchor is the recent item whose term
is largest. The whole batch is scored at once (one sparse gather, one sort). Reason code
``because_you_watched``.

Example:
    >>> import pyarrow as pa
    >>> from funnel.retrieval.sources.common import retrieval_data
    >>> from funnel.retrieval.source import RetrievalQuery
    >>> t = pa.table({"user_id": ["a", "a", "b", "b", "c"], "item_id": ["x", "y", "x", "y", "z"]})
    >>> data = retrieval_data(t)
    >>> src = ItemKNNSource(shrink=0.0).fit(data)
    >>> q = RetrievalQuery(["c"], data.X[[2]], [np.array([0])], [{}], 0)  # c just watched x
    >>> got = src.retrieve(q, 5)[0]
    >>> got.items.tolist(), got.reason.tolist(), got.anchor.tolist()
    ([1], ['because_you_watched'], [0])
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import scipy.sparse as sp

from funnel.retrieval.item_knn import ItemKNNRecommender
from funnel.retrieval.source import Candidates, RetrievalData, RetrievalQuery
from funnel.retrieval.sources.common import BaseSource, candidates, member

REASON = "because_you_watched"


class ItemKNNSource(BaseSource):
    """Item-to-item candidates from a precomputed neighbour table.

    Args:
        k_neighbours, shrink: the :class:`~funnel.retrieval.item_knn.ItemKNNRecommender` ones.
        n_recent: recent items used as seeds (newest first).
        recency_decay: weight ratio between consecutive recent items (1 = no decay).

    Attributes:
        neighbours_: ``n_items × n_items`` CSR of each item's top neighbours.
    """

    name = "item_knn"
    asked_inline = True  # in-memory tables only (AskedInline)

    def __init__(
        self, k_neighbours: int = 100, shrink: float = 100.0, n_recent: int = 20, recency_decay: float = 0.9
    ) -> None:
        self.k_neighbours = k_neighbours
        self.shrink = shrink
        self.n_recent = n_recent
        self.recency_decay = recency_decay

    def fit(self, data: RetrievalData) -> Self:
        """Build the neighbour table from ``data.X``."""
        model = ItemKNNRecommender(self.k_neighbours, self.shrink).fit(data.X)
        self.neighbours_ = model.neighbours_
        self.n_items_ = model.n_items_
        return self

    def _seeds(self, query: RetrievalQuery) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(user row, item, weight)`` of every seed item of the batch."""
        H = query.histories.tocsr()
        users, items, weights = [], [], []
        for u in range(len(query)):
            recent = query.recent[u] if u < len(query.recent) else np.empty(0, np.int64)
            seeds = np.asarray(recent, dtype=np.int64)
            if not len(seeds):
                seeds = H.indices[H.indptr[u] : H.indptr[u + 1]].astype(np.int64)
            seeds = seeds[(seeds >= 0) & (seeds < self.n_items_)]
            _, first = np.unique(seeds, return_index=True)  # a repeated item keeps its newest slot
            seeds = seeds[np.sort(first)][: self.n_recent]
            users.append(np.full(len(seeds), u, dtype=np.int64))
            items.append(seeds)
            weights.append(self.recency_decay ** np.arange(len(seeds), dtype=np.float64))
        return np.concatenate(users), np.concatenate(items), np.concatenate(weights)

    def retrieve(self, query: RetrievalQuery, k: int) -> list[Candidates]:
        """Up to ``k`` neighbours of each user's recent items, seen items excluded, best first."""
        self._check(query, k)
        n = len(query)
        su, si, sw = self._seeds(query)
        N = self.neighbours_
        counts = N.indptr[si + 1] - N.indptr[si]  # not np.diff(N.indptr): a catalogue-long array
        starts = np.repeat(N.indptr[si], counts)
        pos = starts + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        user = np.repeat(su, counts)
        anchor = np.repeat(si, counts)
        item = N.indices[pos].astype(np.int64)
        term = np.repeat(sw, counts) * N.data[pos]
        m = self.n_items_
        key = user * m + item
        H = query.histories.tocsr()
        seen = np.repeat(np.arange(n, dtype=np.int64), np.diff(H.indptr)) * m + H.indices
        keep = ~member(key, seen)
        key, anchor, term = key[keep], anchor[keep], term[keep]
        order = np.lexsort((-term, key))  # per (user, item): the largest term first
        key, anchor, term = key[order], anchor[order], term[order]
        uniq, first = np.unique(key, return_index=True)
        total = np.add.reduceat(term, first) if len(first) else np.empty(0)
        top_anchor = anchor[first]
        u_of = uniq // m
        order = np.lexsort((-total, u_of))  # per user: best score first
        uniq, total, top_anchor, u_of = uniq[order], total[order], top_anchor[order], u_of[order]
        bounds = np.searchsorted(u_of, np.arange(n + 1))
        out = []
        for u in range(n):
            s, e = bounds[u], min(bounds[u + 1], bounds[u] + k)
            out.append(candidates(uniq[s:e] % m, total[s:e], REASON, top_anchor[s:e]))
        return out

    def _state(self) -> dict[str, Any]:
        return {"neighbours": self.neighbours_}

    def _set_state(self, arrays: dict[str, Any], meta: dict[str, Any]) -> None:
        self.neighbours_ = sp.csr_matrix(arrays["neighbours"], dtype=np.float32)
