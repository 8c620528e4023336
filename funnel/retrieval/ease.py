"""EASE (Steck, 2019): a closed-form item-item linear autoencoder with a zero diagonal.

``B = I − P·diag(1/diag(P))`` with ``P = (XᵀX + λI)⁻¹``, i.e. ``B_ij = −P_ij / P_jj`` and
``B_jj = 0``; a history ``x_u`` scores items as ``x_u · B``. The inverse is a dense
``n × n`` float32 Cholesky inverse (LAPACK ``potrf``/``potri``), so memory grows with the square
of the catalogue: ``fit`` refuses more than ``max_items`` items with a ``ResourceLimitError``.

Only items with at least one interaction in ``X`` enter the dense matrix (an item without any
has a zero column in ``B`` anyway: it scores 0 for everyone), so the limit applies to them.

Example:
    >>> import scipy.sparse as sp
    >>> X = sp.csr_matrix([[1, 1, 0], [1, 1, 0], [0, 1, 1], [1, 0, 0]], dtype="float32")
    >>> model = EASERecommender(l2=1.0).fit(X)
    >>> model.B_.shape, float(model.B_[0, 0])
    ((3, 3), 0.0)
    >>> model.recommend(sp.csr_matrix([[1, 0, 0]], dtype="float32"), k=1)[0].tolist()
    [[1]]
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from funnel.core.errors import ResourceLimitError, ValidationError
from funnel.retrieval.base import BaseRecommender, as_matrix


def _ease_weights(G: np.ndarray) -> np.ndarray:
    """``B`` from the regularised Gram matrix ``G`` (C-order float32, overwritten and returned).

    The symmetric ``G`` is handed to LAPACK as its transpose (an F-order view of the same matrix,
    so no copy): ``potrf`` + ``potri`` leave ``P = G⁻¹`` in one triangle, mirrored block-wise.
    """
    n = G.shape[0]
    c, info = scipy.linalg.lapack.spotrf(G.T, lower=0, clean=0, overwrite_a=1)
    if info != 0:
        raise ValidationError(f"Gram matrix not positive definite (LAPACK info {info})", field="l2")
    P, info = scipy.linalg.lapack.spotri(c, lower=0, overwrite_c=1)
    if info != 0:
        raise ValidationError(f"Gram matrix inversion failed (LAPACK info {info})", field="l2")
    Q = P.T  # C order; its lower triangle (row >= col) holds P
    step = 512
    for s in range(0, n, step):
        e = min(n, s + step)
        Q[s:e, e:] = Q[e:, s:e].T
        diag = Q[s:e, s:e]
        diag[np.triu_indices(e - s, 1)] = diag.T[np.triu_indices(e - s, 1)]
    Q /= -np.diag(Q)[None, :]
    Q[np.diag_indices(n)] = 0.0
    return Q


class EASERecommender(BaseRecommender):
    """Embarrassingly Shallow Autoencoder: dense item-item weights in closed form.

    Args:
        l2: the ridge penalty λ added to the diagonal of the Gram matrix ``XᵀX``.
        max_items: the largest number of (interacted) items ``fit`` accepts; memory is about
            ``8·n²`` bytes during the fit and ``4·n²`` after.

    Attributes:
        B_: ``float32 [n_active, n_active]`` weights over the items in ``item_index_``.
        item_index_: ``int32`` indices of the items that had interactions at fit time.
    """

    kind = "ease"

    def __init__(self, l2: float = 500.0, max_items: int = 20_000) -> None:
        if l2 <= 0:
            raise ValidationError(f"must be > 0, got {l2}", field="l2")
        self.l2 = l2
        self.max_items = max_items

    def fit(self, X: sp.csr_matrix) -> Self:
        """Solve for ``B`` from the users×items matrix ``X`` (refusing catalogues over ``max_items``)."""
        X = as_matrix(X)
        active = np.flatnonzero(np.bincount(X.indices, minlength=X.shape[1])).astype(np.int32)
        n = len(active)
        if n > self.max_items:
            need = 8 * n * n / 2**30
            raise ResourceLimitError(
                f"EASE would build a dense {n:,} × {n:,} item matrix ({n:,} items with interactions, "
                f"limit max_items={self.max_items:,}), needing about {need:.1f} GiB of memory; "
                "raise max_items if the machine has that memory, or use the 'itemknn' or 'als' model"
            )
        Xa = X[:, active]
        G = (Xa.T.tocsr() @ Xa).toarray()  # float32, C order
        G[np.diag_indices(n)] += np.float32(self.l2)
        self.B_ = _ease_weights(G)
        self.item_index_ = active
        self.n_items_ = X.shape[1]
        return self

    def _scores(self, rows: sp.csr_matrix) -> np.ndarray:
        if len(self.item_index_) == self.n_items_:
            return np.asarray(rows @ self.B_, dtype=np.float32)
        out = np.zeros((rows.shape[0], self.n_items_), dtype=np.float32)
        out[:, self.item_index_] = rows[:, self.item_index_] @ self.B_
        return out

    def _state(self) -> dict[str, Any]:
        return {"B": self.B_, "item_index": self.item_index_}

    def _set_state(self, arrays: dict[str, Any]) -> None:
        self.B_ = np.asarray(arrays["B"], dtype=np.float32)
        self.item_index_ = np.asarray(arrays["item_index"], dtype=np.int32)
