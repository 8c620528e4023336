"""Most-popular baseline: every user gets the items most users interacted with.

It is the floor any personalised model must beat, and the fallback source for cold users.

Example:
    >>> import scipy.sparse as sp
    >>> X = sp.csr_matrix([[1, 1, 1], [0, 1, 1], [0, 1, 0]], dtype="float32")
    >>> model = PopularityRecommender().fit(X)
    >>> model.item_counts_.tolist()
    [1, 3, 2]
    >>> model.recommend(X[2:], k=2)[0].tolist()    # item 1 is seen, so it is excluded
    [[2, 0]]
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import scipy.sparse as sp

from funnel.retrieval.base import BaseRecommender, as_matrix, topk


class PopularityRecommender(BaseRecommender):
    """Scores each item by the number of distinct users who interacted with it.

    Attributes:
        item_counts_: ``int64 [n_items]`` distinct users per item in the training matrix.
    """

    kind = "pop"

    def fit(self, X: sp.csr_matrix) -> Self:
        """Count the distinct users of each item (stored values are ignored, only nonzeros count)."""
        X = as_matrix(X)
        self.item_counts_ = np.bincount(X.indices, minlength=X.shape[1]).astype(np.int64)
        self.n_items_ = X.shape[1]
        return self

    def _scores(self, rows: sp.csr_matrix) -> np.ndarray:
        counts = self.item_counts_.astype(np.float32)
        return np.broadcast_to(counts, (rows.shape[0], self.n_items_)).copy()

    def _recommend_block(
        self, rows: sp.csr_matrix, k: int, exclude: sp.csr_matrix
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rank only the ``k + (most items excluded in a row)`` most popular items: the same result."""
        n_cand = min(self.n_items_, k + int(np.diff(exclude.indptr).max(initial=0)))
        cand = np.argsort(-self.item_counts_, kind="stable")[:n_cand]
        scores = np.broadcast_to(self.item_counts_[cand].astype(np.float32), (rows.shape[0], n_cand)).copy()
        slot = np.full(self.n_items_, -1, dtype=np.int64)
        slot[cand] = np.arange(n_cand)
        hit = slot[exclude.indices]
        owner = np.repeat(np.arange(rows.shape[0]), np.diff(exclude.indptr))
        scores[owner[hit >= 0], hit[hit >= 0]] = -np.inf
        idx, val = topk(scores, k, inplace=True)
        return np.where(idx >= 0, cand[np.maximum(idx, 0)], -1).astype(np.int32), val

    def _item_scores(self, items: np.ndarray) -> np.ndarray:
        return self._scores(sp.csr_matrix((len(items), self.n_items_), dtype=np.float32))

    def _state(self) -> dict[str, Any]:
        return {"item_counts": self.item_counts_}

    def _set_state(self, arrays: dict[str, Any]) -> None:
        self.item_counts_ = np.asarray(arrays["item_counts"], dtype=np.int64)
