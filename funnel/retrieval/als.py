"""iALS (Hu, Koren & Volinsky, 2008) through ``implicit``'s CPU ``AlternatingLeastSquares``.

The confidence of an observed interaction is ``1 + alpha·x`` (``x`` = the stored value, 1 for
binary feedback), unobserved pairs have confidence 1 and preference 0. ``implicit`` is given
that confidence matrix directly with its own ``alpha`` fixed at 1 (it multiplies by ``alpha``
and subtracts 1 internally). ``recommend`` folds every history in by solving its user factor
exactly against the item factors (``implicit``'s batched Cholesky ``recalculate_user``), so users
unseen at fit time work, and training users are scored from their current history.

BLAS is limited to one thread around ``implicit`` calls (its own thread pool parallelises).

Example:
    >>> import scipy.sparse as sp
    >>> X = sp.csr_matrix([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 0]], dtype="float32")
    >>> model = ALSRecommender(factors=2, iterations=5).fit(X)
    >>> model.item_factors_.shape
    (4, 2)
    >>> model.recommend(sp.csr_matrix([[0, 0, 1, 0]], dtype="float32"), k=1)[0].tolist()
    [[3]]
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import scipy.sparse as sp
from implicit.cpu.als import AlternatingLeastSquares
from threadpoolctl import threadpool_limits

from funnel.core.errors import ValidationError
from funnel.retrieval.base import BaseRecommender, as_matrix


class ALSRecommender(BaseRecommender):
    """Implicit-feedback matrix factorisation by alternating least squares.

    Args:
        factors: latent dimensions.
        regularization: L2 penalty on the factors (``implicit``'s ``regularization``).
        alpha: confidence slope, ``c_ui = 1 + alpha·x_ui``.
        iterations: ALS sweeps (users then items).
        random_state: seed of the initial factors.
        num_threads: ``implicit``'s threads (0: all cores).

    Attributes:
        item_factors_: ``float32 [n_items, factors]``.
    """

    kind = "als"

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.01,
        alpha: float = 20.0,
        iterations: int = 15,
        random_state: int | None = 0,
        num_threads: int = 0,
    ) -> None:
        if factors < 1 or iterations < 0:
            raise ValidationError("factors must be >= 1 and iterations >= 0", field="factors")
        if alpha < 0 or regularization < 0:
            raise ValidationError("alpha and regularization must be >= 0", field="alpha")
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.random_state = random_state
        self.num_threads = num_threads

    def _implicit(self) -> AlternatingLeastSquares:
        with threadpool_limits(1, "blas"):
            return AlternatingLeastSquares(
                factors=self.factors,
                regularization=self.regularization,
                alpha=1.0,
                iterations=self.iterations,
                random_state=self.random_state,
                num_threads=self.num_threads,
            )

    def _confidence(self, X: sp.csr_matrix) -> sp.csr_matrix:
        C = X.copy()
        C.data = 1.0 + np.float32(self.alpha) * C.data
        return C

    def fit(self, X: sp.csr_matrix) -> Self:
        """Factorise the users×items matrix ``X`` (values are the ``x`` in ``1 + alpha·x``)."""
        X = as_matrix(X)
        model = self._implicit()
        with threadpool_limits(1, "blas"):
            model.fit(self._confidence(X), show_progress=False)
        self._model = model
        self.item_factors_ = np.ascontiguousarray(model.item_factors, dtype=np.float32)
        self.n_items_ = X.shape[1]
        self._set_gram()
        return self

    def user_factors(self, user_rows: sp.csr_matrix) -> np.ndarray:
        """Fold histories in: the least-squares user factor of each row, ``float32 [n, factors]``.

        Solves ``(YᵀY + λI + Σ_i (c_i − 1) y_i y_iᵀ) x = Σ_i c_i y_i`` with ``c_i = 1 + α·h_i``
        over the row's items — what ``implicit``'s ``recalculate_user`` solves, without its
        per-call thread setup (``YᵀY + λI`` is computed once, at fit or load). Empty rows give 0.
        """
        self._check_fitted()
        H = as_matrix(user_rows, self.n_items_, "user_rows")
        Y = self.item_factors_
        out = np.zeros((H.shape[0], Y.shape[1]), dtype=np.float32)
        for u in range(H.shape[0]):
            s, e = H.indptr[u], H.indptr[u + 1]
            if s == e:
                continue
            Yi = Y[H.indices[s:e]].astype(np.float64)
            c = 1.0 + self.alpha * H.data[s:e].astype(np.float64)
            out[u] = np.linalg.solve(self.gram_ + (Yi.T * (c - 1.0)) @ Yi, Yi.T @ c)
        return out

    def _set_gram(self) -> None:
        Y = self.item_factors_.astype(np.float64)
        self.gram_ = Y.T @ Y + self.regularization * np.eye(Y.shape[1])

    def _scores(self, rows: sp.csr_matrix) -> np.ndarray:
        return self.user_factors(rows) @ self.item_factors_.T

    def _item_scores(self, items: np.ndarray) -> np.ndarray:
        """Cosine similarity between item factors."""
        norms = np.linalg.norm(self.item_factors_, axis=1)
        unit = self.item_factors_ / np.where(norms > 0, norms, 1.0)[:, None]
        return unit[items] @ unit.T

    def _state(self) -> dict[str, Any]:
        return {"item_factors": self.item_factors_}

    def _set_state(self, arrays: dict[str, Any]) -> None:
        self.item_factors_ = np.ascontiguousarray(arrays["item_factors"], dtype=np.float32)
        self._set_gram()
