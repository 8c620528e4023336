"""Item-kNN: cosine similarity between item columns, a sparse top-k neighbour table per item.

The similarity of items ``i`` and ``j`` is ``x_i·x_j / (‖x_i‖‖x_j‖ + shrink)`` over their user
columns. It is computed from sparse rows of ``XᵀX`` for a block of items at a time (blocks sized so
that each holds about :data:`~funnel.retrieval.base.SCORE_BLOCK_FLOATS` co-occurrences at most),
keeping only each item's ``k_neighbours`` most similar items: a 100k-item catalogue never builds
a dense items×items matrix, and memory follows the co-occurrences actually present.

A history ``x_u`` scores items as ``x_u · S`` (``S``: the sparse neighbour table). Only items
reached through a neighbour of the history are eligible: an item without any evidence is never
returned, so short histories may get lists padded with ``-1``. Ranking works on the sparse
scores directly (:func:`~funnel.retrieval.base.topk_sparse`).

Example:
    >>> import scipy.sparse as sp
    >>> X = sp.csr_matrix([[1, 1, 0], [1, 1, 0], [0, 1, 1]], dtype="float32")
    >>> model = ItemKNNRecommender(k_neighbours=1, shrink=0.0).fit(X)
    >>> model.neighbours_.toarray().round(3)
    array([[0.   , 0.816, 0.   ],
           [0.816, 0.   , 0.   ],
           [0.   , 0.577, 0.   ]], dtype=float32)
    >>> model.recommend(sp.csr_matrix([[0, 0, 1]], dtype="float32"), k=2)[0].tolist()
    [[1, -1]]
"""

from __future__ import annotations

import itertools
from typing import Any, Self

import numpy as np
import scipy.sparse as sp

from funnel.core.errors import ValidationError
from funnel.retrieval import base
from funnel.retrieval.base import BaseRecommender, as_matrix, topk_sparse


def _blocks(work: np.ndarray, budget: float) -> np.ndarray:
    """Boundaries ``[0, …, n]`` cutting rows into runs whose ``work`` sums stay near ``budget``."""
    cum = np.cumsum(work)
    cuts = np.searchsorted(cum, np.arange(budget, cum[-1] if len(cum) else 0, budget), side="right")
    return np.unique(np.concatenate([[0], cuts, [len(work)]]).astype(np.int64))


class ItemKNNRecommender(BaseRecommender):
    """Item-based nearest neighbours with (shrunk) cosine similarity.

    Args:
        k_neighbours: neighbours kept per item (the rows of ``neighbours_``).
        shrink: added to the cosine denominator; damps similarities resting on few users.

    Attributes:
        neighbours_: ``n_items × n_items`` CSR, row ``i`` holds item ``i``'s neighbours and their
            similarities (at most ``k_neighbours`` positive entries, the diagonal excluded).
    """

    kind = "itemknn"

    def __init__(self, k_neighbours: int = 100, shrink: float = 100.0) -> None:
        if k_neighbours < 1:
            raise ValidationError(f"must be >= 1, got {k_neighbours}", field="k_neighbours")
        if shrink < 0:
            raise ValidationError(f"must be >= 0, got {shrink}", field="shrink")
        self.k_neighbours = k_neighbours
        self.shrink = shrink

    def fit(self, X: sp.csr_matrix) -> Self:
        """Build the neighbour table from the users×items matrix ``X``, block by block."""
        X = as_matrix(X)
        n_items = X.shape[1]
        norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=0), dtype=np.float32).ravel())
        XT = X.T.tocsr()
        # co-occurrence entries each item's row of XᵀX can hold at most: cut blocks on their sum
        work = np.minimum(XT @ np.diff(X.indptr).astype(np.float64), n_items)
        bounds = _blocks(work, base.SCORE_BLOCK_FLOATS)
        parts = [self._block(XT[s:e] @ X, s, norms) for s, e in itertools.pairwise(bounds)]
        rows, cols, vals = (np.concatenate([p[j] for p in parts]) for j in range(3))
        self.neighbours_ = sp.csr_matrix((vals, (rows, cols)), shape=(n_items, n_items), dtype=np.float32)
        self.neighbours_.sort_indices()
        self.n_items_ = n_items
        return self

    def _block(
        self, dots: sp.csr_matrix, start: int, norms: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The top ``k_neighbours`` (row, col, similarity) of a block of rows of ``XᵀX``."""
        coo = dots.tocoo()
        rows, cols = coo.row.astype(np.int64) + start, coo.col.astype(np.int64)
        sim = coo.data / (norms[rows] * norms[cols] + np.float32(self.shrink))
        keep = (rows != cols) & (sim > 0)
        rows, cols, sim = rows[keep], cols[keep], sim[keep].astype(np.float32)
        order = np.lexsort((-sim, rows))  # by row, most similar first
        rows, cols, sim = rows[order], cols[order], sim[order]
        first = np.searchsorted(rows, rows)  # index of each row's first entry
        top = np.arange(len(rows)) - first < self.k_neighbours
        return rows[top], cols[top], sim[top]

    def _scores(self, rows: sp.csr_matrix) -> np.ndarray:
        scores = (rows @ self.neighbours_).toarray()
        scores[scores == 0] = -np.inf
        return scores

    def _recommend_block(
        self, rows: sp.csr_matrix, k: int, exclude: sp.csr_matrix
    ) -> tuple[np.ndarray, np.ndarray]:
        return topk_sparse(rows @ self.neighbours_, k, exclude)

    def _similar_block(self, items: np.ndarray, k: int, own: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        return topk_sparse(self.neighbours_[items], k, own)

    def _state(self) -> dict[str, Any]:
        return {"neighbours": self.neighbours_}

    def _set_state(self, arrays: dict[str, Any]) -> None:
        self.neighbours_ = sp.csr_matrix(arrays["neighbours"], dtype=np.float32)
