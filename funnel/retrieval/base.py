"""The recommender protocol every baseline follows, and the shared batched top-k machinery.

A recommender is an estimator: hyper-parameters in ``__init__``, learned state in attributes
ending in ``_``, ``fit(X) -> self`` on a users×items ``float32`` CSR matrix of implicit feedback.
``recommend`` scores the *histories* it is given (rows over the same item space), so users
unseen at fit time are folded in; it is batch-first and processes users in blocks so memory
stays bounded whatever the number of users.

Example:
    >>> import numpy as np
    >>> idx, val = topk(np.array([[0.25, 0.75, 0.5]], dtype=np.float32), 2)
    >>> idx.tolist(), val.tolist()
    ([[1, 2]], [[0.75, 0.5]])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import numpy as np
import scipy.sparse as sp

from funnel.core.artifacts import load_artifact, save_artifact
from funnel.core.errors import NotTrainedError, ValidationError
from funnel.core.estimator import Estimator

SCORE_BLOCK_FLOATS = 1 << 24
"""Dense scores held at once by ``recommend``/``similar_items`` (16M float32 = 64 MiB)."""


@runtime_checkable
class Recommender(Protocol):
    """What every retrieval model offers (see :class:`BaseRecommender` for the semantics)."""

    def fit(self, X: sp.csr_matrix) -> Self:
        """Learn from a users×items ``float32`` matrix of binary implicit feedback."""
        ...

    def recommend(
        self, user_rows: sp.csr_matrix, k: int, exclude: sp.csr_matrix | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items (``int32 [n, k]``) and scores (``float32 [n, k]``) for each history row."""
        ...

    def similar_items(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items most similar to each of ``items``, the item itself excluded."""
        ...

    def save(self, folder: str | Path) -> None:
        """Persist the fitted model as an artifact folder (no pickle)."""
        ...

    @classmethod
    def load(cls, folder: str | Path) -> Self:
        """Load a model written by :meth:`save`."""
        ...


def block_size(n_cols: int, budget: int | None = None) -> int:
    """Rows per block so that a dense ``rows × n_cols`` block stays within ``budget`` floats.

    ``budget`` defaults to :data:`SCORE_BLOCK_FLOATS` (read at call time).
    """
    return max(1, (SCORE_BLOCK_FLOATS if budget is None else budget) // max(1, n_cols))


def topk(
    scores: np.ndarray, k: int, exclude: sp.csr_matrix | None = None, *, inplace: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` best columns of each row of ``scores``, best first.

    Columns that are nonzero in ``exclude`` (same shape) and columns scoring ``-inf`` are not
    eligible; rows with fewer than ``k`` eligible columns (including ``k > n_cols``) are padded
    with item ``-1`` and score ``-inf``. Ties are broken arbitrarily. ``scores`` is overwritten
    when ``inplace`` (saves a copy on large blocks).

    Returns:
        ``(items int32 [n, k], scores float32 [n, k])``.

    Example:
        >>> s = np.array([[3.0, 1.0, 2.0]], dtype=np.float32)
        >>> topk(s, 4, exclude=sp.csr_matrix([[1.0, 0.0, 0.0]]))[0].tolist()
        [[2, 1, -1, -1]]
    """
    if k < 1:
        raise ValidationError(f"k must be >= 1, got {k}", field="k")
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float32))
    n, m = scores.shape
    if exclude is not None and exclude.nnz:
        if exclude.shape != scores.shape:
            raise ValidationError(
                f"exclude has shape {exclude.shape}, scores {scores.shape}", field="exclude"
            )
        if not inplace:
            scores = scores.copy()
        ex = sp.csr_matrix(exclude)
        rows = np.repeat(np.arange(n), np.diff(ex.indptr))
        scores[rows, ex.indices] = -np.inf
    kk = min(k, m)
    if kk < m:
        part = np.argpartition(scores, m - kk, axis=1)[:, m - kk :]
    else:
        part = np.broadcast_to(np.arange(m), (n, m))
    top = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-top, axis=1, kind="stable")
    items = np.take_along_axis(part, order, axis=1).astype(np.int32)
    vals = np.take_along_axis(top, order, axis=1)
    items[vals == -np.inf] = -1
    if kk < k:
        items = np.hstack([items, np.full((n, k - kk), -1, dtype=np.int32)])
        vals = np.hstack([vals, np.full((n, k - kk), -np.inf, dtype=np.float32)])
    return items, vals


def topk_sparse(
    scores: sp.csr_matrix, k: int, exclude: sp.csr_matrix | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`topk` for sparse scores: only stored entries are eligible (missing ones never returned).

    Works on the stored entries alone (a sort per block), so it suits models whose scores are
    mostly "no evidence", without a dense ``n × n_items`` array.

    Example:
        >>> topk_sparse(sp.csr_matrix([[0.0, 2.0, 1.0]]), 3)[0].tolist()
        [[1, 2, -1]]
    """
    if k < 1:
        raise ValidationError(f"k must be >= 1, got {k}", field="k")
    S = sp.csr_matrix(scores)
    n, m = S.shape
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(S.indptr))
    cols, vals = S.indices.astype(np.int64), S.data.astype(np.float32)
    keep = vals > -np.inf
    if exclude is not None and exclude.nnz:
        ex = sp.csr_matrix(exclude)
        ex_rows = np.repeat(np.arange(ex.shape[0], dtype=np.int64), np.diff(ex.indptr))
        keep &= ~np.isin(rows * m + cols, ex_rows * m + ex.indices)
    rows, cols, vals = rows[keep], cols[keep], vals[keep]
    order = np.lexsort((-vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    rank = np.arange(len(rows)) - np.searchsorted(rows, rows)
    top = rank < k
    items = np.full((n, k), -1, dtype=np.int32)
    out = np.full((n, k), -np.inf, dtype=np.float32)
    items[rows[top], rank[top]] = cols[top]
    out[rows[top], rank[top]] = vals[top]
    return items, out


def as_matrix(X: Any, n_items: int | None = None, name: str = "X") -> sp.csr_matrix:
    """``X`` as a canonical ``float32`` CSR matrix (duplicates summed, explicit zeros dropped).

    Checks the number of item columns when ``n_items`` is given.
    """
    if not sp.issparse(X):
        raise ValidationError(f"expected a scipy sparse matrix, got {type(X).__name__}", field=name)
    X = sp.csr_matrix(X, dtype=np.float32)
    if n_items is not None and X.shape[1] != n_items:
        raise ValidationError(f"has {X.shape[1]} item columns, the model was fit on {n_items}", field=name)
    if not X.has_canonical_format or (X.nnz and not np.all(X.data)):
        X = X.copy()
        X.sum_duplicates()
        X.eliminate_zeros()
    return X


class BaseRecommender(Estimator):
    """Shared behaviour: validation, batched ``recommend``/``similar_items``, save/load.

    Subclasses set ``kind``, implement ``fit``, ``_scores(rows) -> dense [n, n_items]``,
    ``_state() -> dict`` and ``_set_state(arrays)``; they may override ``_item_scores``.
    """

    kind: ClassVar[str] = "base"
    format_version: ClassVar[int] = 1
    n_items_: int

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotTrainedError(f"{type(self).__name__} is not fitted; call fit() first")

    def _scores(self, rows: sp.csr_matrix) -> np.ndarray:
        raise NotImplementedError

    def _item_scores(self, items: np.ndarray) -> np.ndarray:
        """Scores of every item given each of ``items`` alone (default: one-item histories)."""
        one_hot = sp.csr_matrix(
            (np.ones(len(items), dtype=np.float32), (np.arange(len(items)), items)),
            shape=(len(items), self.n_items_),
        )
        return self._scores(one_hot)

    def _state(self) -> dict[str, Any]:
        raise NotImplementedError

    def _set_state(self, arrays: dict[str, Any]) -> None:
        raise NotImplementedError

    def recommend(
        self, user_rows: sp.csr_matrix, k: int, exclude: sp.csr_matrix | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items for each history in ``user_rows``, best first.

        Args:
            user_rows: ``n × n_items`` histories (any users, seen at fit time or not).
            k: list length; rows with fewer eligible items are padded with ``-1`` / ``-inf``.
            exclude: items never to return per row; default: the nonzeros of ``user_rows``
                (seen items); an empty matrix excludes nothing.

        Returns:
            ``(items int32 [n, k], scores float32 [n, k])``.
        """
        self._check_fitted()
        rows = as_matrix(user_rows, self.n_items_, "user_rows")
        ex = rows if exclude is None else as_matrix(exclude, self.n_items_, "exclude")
        if ex.shape[0] != rows.shape[0]:
            raise ValidationError(f"has {ex.shape[0]} rows, user_rows {rows.shape[0]}", field="exclude")
        n = rows.shape[0]
        items = np.full((n, k), -1, dtype=np.int32)
        scores = np.full((n, k), -np.inf, dtype=np.float32)
        step = block_size(self.n_items_)
        for s in range(0, n, step):
            e = min(n, s + step)
            items[s:e], scores[s:e] = self._recommend_block(rows[s:e], k, ex[s:e])
        return items, scores

    def _recommend_block(
        self, rows: sp.csr_matrix, k: int, exclude: sp.csr_matrix
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` of one block of histories (what ``recommend`` runs per block)."""
        return topk(self._scores(rows), k, exclude, inplace=True)

    def similar_items(self, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` items most similar to each of ``items`` (the item itself excluded), best first."""
        self._check_fitted()
        items = np.asarray(items, dtype=np.int64).ravel()
        if items.size and (items.min() < 0 or items.max() >= self.n_items_):
            raise ValidationError(f"item indices must be in [0, {self.n_items_})", field="items")
        n = len(items)
        out_i = np.full((n, k), -1, dtype=np.int32)
        out_s = np.full((n, k), -np.inf, dtype=np.float32)
        step = block_size(self.n_items_)
        for s in range(0, n, step):
            block = items[s : s + step]
            own = sp.csr_matrix(
                (np.ones(len(block), dtype=np.float32), (np.arange(len(block)), block)),
                shape=(len(block), self.n_items_),
            )
            out_i[s : s + len(block)], out_s[s : s + len(block)] = self._similar_block(block, k, own)
        return out_i, out_s

    def _similar_block(self, items: np.ndarray, k: int, own: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` similar items of one block of ``items`` (``own``: each item, to exclude)."""
        return topk(self._item_scores(items), k, own, inplace=True)

    def save(self, folder: str | Path) -> None:
        """Write ``manifest.json`` (kind, version, hyper-parameters) and ``arrays.npz`` to ``folder``."""
        self._check_fitted()
        save_artifact(
            folder,
            self.kind,
            self.format_version,
            self.get_params(),
            self._state(),
            {"n_items": self.n_items_},
        )

    @classmethod
    def load(cls, folder: str | Path) -> Self:
        """Load a model written by :meth:`save` (checks kind and format version; no pickle)."""
        art = load_artifact(folder, cls.kind, cls.format_version)
        model = cls(**art.params)
        model.n_items_ = int(art.meta["n_items"])
        model._set_state(art.arrays)
        return model
