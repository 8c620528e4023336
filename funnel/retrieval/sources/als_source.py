"""``als``: iALS item factors in an ANN index, the user vector folded in from the current history.

At request time each user's factor is re-solved from ``query.histories`` (the least-squares
fold-in of :meth:`~funnel.retrieval.als.ALSRecommender.user_factors`), so a new interaction
changes the candidates without retraining. Items are searched by inner product in an
:class:`~funnel.ann.protocol.AnnIndex` built by ``funnel.ann.factory.make_index(index, dim,
**index_params)``; approximate kinds index the items after :func:`mips_augment`, which keeps
HNSW's recall on inner products. Users with an empty history get no candidates (no signal).

The default ``index="auto"`` is exact up to :data:`EXACT_MAX_ITEMS` items and IVF fast-scan PQ with
an exact refine above (:data:`AUTO_ANN_PARAMS`, :mod:`funnel.ann.faiss_fastscan`). An exact search
reads every item vector per request: 20-30 ms of one core on a 1M-item synthetic catalogue. On that
catalogue's factors (``python -m benchmarks.bench_als_index``: ``bench_api``'s world, 351,526 items
with interactions, k = 491, one query a call on one thread, medians) the fast-scan index at
``nprobe=256, refine_factor=4`` finds 89.3% of the exact top k in 1.55 ms, against 85.0% in 2.5 ms
for IVF-SQ8 at ``nprobe=128`` (the default before) and 91.0% in 4.5 ms at ``nprobe=256``; it holds a
float32 row per item for the refine (111 MB there, SQ8 25 MB). ALS factors of a sparse catalogue
cluster far less well than ``benchmarks/bench_ann``'s data (recall@100 0.98 there; HNSW found less
and takes minutes to build, the IVF indexes 5-10 s). Approximate indexes leave out the items whose
factors are all zero (no interactions at fit time: they score 0 for every user; on a sparse 1M
catalogue they are most of it, one point after :func:`mips_augment` that swamps an IVF cell).
Reason code: ``picked_for_you``.

The saved artifact holds the item factors and the index (``index/``, read back with
``load_index``; rebuilt from the factors when absent).

Example:
    >>> import scipy.sparse as sp
    >>> from funnel.retrieval.sources.common import retrieval_data
    >>> import pyarrow as pa
    >>> t = pa.table({"user_id": ["a", "a", "b", "b", "c"], "item_id": ["x", "y", "x", "y", "z"]})
    >>> src = ALSSource(factors=2, iterations=3).fit(retrieval_data(t))
    >>> src.item_factors_.shape
    (3, 2)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Self

import numpy as np
import scipy.sparse as sp

from funnel.ann.factory import load_index, make_index
from funnel.ann.protocol import AnnIndex
from funnel.retrieval.als import ALSRecommender
from funnel.retrieval.source import Candidates, RetrievalData, RetrievalQuery
from funnel.retrieval.sources.common import BaseSource, candidates, listed_mask, seen_of

REASON = "picked_for_you"
EXACT_MAX_ITEMS = 100_000
"""``index="auto"`` searches exactly up to this many items, with :data:`AUTO_ANN` above."""
AUTO_ANN, AUTO_ANN_PARAMS = "ivf_pq_fs", {"nlist": 1024, "nprobe": 256, "refine_factor": 4}
"""The index of ``index="auto"`` above :data:`EXACT_MAX_ITEMS` items (``index_params`` override)."""


def build_index(
    kind: str, vectors: np.ndarray, params: dict[str, Any], ids: np.ndarray | None = None
) -> AnnIndex:
    """An ``AnnIndex`` of ``kind`` holding ``vectors`` under ``ids`` (default ``0..n-1``; ``make_index``)."""
    index = make_index(kind, vectors.shape[1], **params)
    ids = np.arange(len(vectors), dtype=np.int64) if ids is None else np.asarray(ids, np.int64)
    index.add(ids, np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def mips_augment(items: np.ndarray) -> np.ndarray:
    """Items with one more coordinate ``sqrt(max‖y‖² − ‖y‖²)``: every row gets the same norm.

    Queries get a ``0`` there, so inner products are unchanged, while maximum-inner-product search
    becomes nearest-neighbour search on a sphere, where graph indexes (HNSW) keep their recall
    (Bachrach et al., 2014). ALS item norms vary a lot (popularity), which otherwise cripples HNSW.
    """
    sq = np.einsum("ij,ij->i", items, items, dtype=np.float64)
    extra = np.sqrt(np.maximum(sq.max(initial=0.0) - sq, 0.0))
    return np.hstack([items, extra[:, None]]).astype(np.float32)


class ALSSource(BaseSource):
    """Implicit ALS candidates ("users like you"), fresh events folded in at request time.

    Args:
        factors, regularization, alpha, iterations, random_state, num_threads: the
            :class:`~funnel.retrieval.als.ALSRecommender` hyper-parameters.
        index: ANN index kind for ``make_index`` (e.g. ``"exact"``, ``"hnsw"``), or ``"auto"``
            (default): exact up to :data:`EXACT_MAX_ITEMS` items, else :data:`AUTO_ANN`.
        index_params: keyword parameters of that index (with ``"auto"``: of the ANN kind only).

    Attributes:
        item_factors_: ``float32 [n_items, factors]``.
        index_: the fitted ``AnnIndex`` over the item factors.
    """

    name = "als"

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 0.01,
        alpha: float = 20.0,
        iterations: int = 15,
        random_state: int | None = 0,
        num_threads: int = 0,
        index: str = "auto",
        index_params: dict[str, Any] | None = None,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.random_state = random_state
        self.num_threads = num_threads
        self.index = index
        self.index_params = dict(index_params or {})
        self._model_params = {
            "factors": factors,
            "regularization": regularization,
            "alpha": alpha,
            "iterations": iterations,
            "random_state": random_state,
            "num_threads": num_threads,
        }

    def fit(self, data: RetrievalData) -> Self:
        """Factorise ``data.X`` and index the item factors."""
        self.model_ = ALSRecommender(**self._model_params).fit(data.X)
        self._finish(self.model_.item_factors_, listed_mask(data.items, data.X.shape[1]))
        return self

    def _augmented(self) -> bool:
        return not getattr(self.index_, "is_exact", False)

    def index_kind(self, n_items: int) -> str:
        """The index kind used for ``n_items`` items (``index`` resolved when ``"auto"``)."""
        if self.index != "auto":
            return self.index
        return "exact" if n_items <= EXACT_MAX_ITEMS else AUTO_ANN

    def _finish(self, item_factors: np.ndarray, listed: np.ndarray | None = None) -> None:
        """Index the factors of the ``listed`` items (default: all; unlisted ones are left out)."""
        self.item_factors_ = item_factors
        self.listed_ = np.ones(len(item_factors), bool) if listed is None else np.asarray(listed, bool)
        kind = self.index_kind(item_factors.shape[0])
        params = self.index_params
        if self.index == "auto":
            params = {} if kind == "exact" else {**AUTO_ANN_PARAMS, **self.index_params}
        if kind == "exact":
            ids = np.flatnonzero(self.listed_)
            self.index_ = build_index(kind, item_factors[ids], params, ids)
        else:  # items without interactions have all-zero factors (score 0 for everyone): left out
            ids = np.flatnonzero(np.any(item_factors != 0, axis=1) & self.listed_)
            self.index_ = build_index(kind, mips_augment(item_factors)[ids], params, ids)
        self.n_items_ = item_factors.shape[0]

    def user_vectors(self, histories: sp.csr_matrix) -> np.ndarray:
        """Fold histories in (:meth:`ALSRecommender.user_factors`): ``float32 [n, factors]``."""
        return self.model_.user_factors(histories)

    def retrieve(self, query: RetrievalQuery, k: int) -> list[Candidates]:
        """Top ``k`` items by inner product with each user's folded-in factor, seen items excluded."""
        self._check(query, k)
        H = query.histories.tocsr()
        active = np.flatnonzero(np.diff(H.indptr))
        out = [Candidates.empty() for _ in range(len(query))]
        if not len(active):
            return out
        vectors = self.user_vectors(H[active])
        if self._augmented():
            vectors = np.hstack([vectors, np.zeros((len(vectors), 1), np.float32)])
        exclude = [seen_of(H, int(u)).astype(np.int64) for u in active]
        ids, scores = self.index_.search(vectors, min(k, self.n_items_), exclude)
        for row, u in enumerate(active):
            valid = ids[row] >= 0
            out[u] = candidates(ids[row][valid], scores[row][valid], REASON)
        return out

    def _state(self) -> dict[str, Any]:
        return {"item_factors": self.item_factors_, "listed": self.listed_}

    def _set_state(self, arrays: dict[str, Any], meta: dict[str, Any]) -> None:
        model = ALSRecommender(**self._model_params)
        model.n_items_ = int(meta["n_items"])
        model._set_state({"item_factors": arrays["item_factors"]})
        self.model_ = model
        self.item_factors_ = model.item_factors_
        default = np.ones(len(self.item_factors_), bool)  # artifacts before the listed flags: all
        self.listed_ = np.asarray(arrays.get("listed", default), bool)

    def save(self, folder: str | Path) -> None:
        """Write the item factors (``arrays.npz``) and the ANN index (``index/``) to ``folder``."""
        super().save(folder)
        self.index_.save(Path(folder) / "index")

    @classmethod
    def load(cls, folder: str | Path) -> Self:
        """Read a source written by :meth:`save` (the index too, or rebuilt when it is missing)."""
        source = super().load(folder)
        path = Path(folder) / "index"
        if (path / "manifest.json").exists():
            source.index_ = load_index(path)
        else:
            source._finish(source.item_factors_, source.listed_)
        return source
