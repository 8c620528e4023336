"""``editorial``: curated and sponsored must-show lists. Reasons ``editorial`` and ``sponsored``.

Both lists are external item ids, in display order, given through config (``curated``,
``sponsored``) or at runtime with :meth:`EditorialSource.set_lists`; :meth:`save` persists the
current lists. The ``j``-th entry of a list scores ``1 / (1 + j)``; an item on both lists is
``sponsored`` (the disclosure wins). Ids missing from the catalogue are skipped and counted in
``unknown_``. Seen items are excluded like everywhere else.

Example:
    >>> import pyarrow as pa
    >>> from funnel.retrieval.sources.common import retrieval_data
    >>> from funnel.retrieval.source import RetrievalQuery
    >>> t = pa.table({"user_id": ["a", "a"], "item_id": ["x", "y"]})
    >>> src = EditorialSource(curated=["y", "zz"]).fit(retrieval_data(t))
    >>> src.set_lists(sponsored=["x"])
    >>> got = src.retrieve(RetrievalQuery(["b"], sp.csr_matrix((1, 2)), [np.array([])], [{}], 0), 5)[0]
    >>> got.items.tolist(), got.reason.tolist(), src.unknown_
    ([1, 0], ['editorial', 'sponsored'], ['zz'])
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import scipy.sparse as sp

from funnel.retrieval.source import Candidates, RetrievalData, RetrievalQuery
from funnel.retrieval.sources.common import BaseSource, candidates, member, seen_of


class EditorialSource(BaseSource):
    """Hand-picked candidates.

    Args:
        curated: editorial item ids, in order.
        sponsored: sponsored item ids, in order.

    Attributes:
        item_ids_: the catalogue's external ids in index order (to resolve lists at runtime).
        unknown_: ids of the current lists that are not in the catalogue.
    """

    name = "editorial"
    asked_inline = True  # in-memory tables only (AskedInline)

    def __init__(self, curated: list[str] | None = None, sponsored: list[str] | None = None) -> None:
        self.curated = list(curated or [])
        self.sponsored = list(sponsored or [])

    def fit(self, data: RetrievalData) -> Self:
        """Remember the catalogue's ids and resolve the configured lists."""
        self.item_ids_ = np.asarray(data.items.column("item_id").to_pylist(), dtype=str)
        self.n_items_ = data.X.shape[1]
        self._resolve()
        return self

    def _resolve(self) -> None:
        order = np.argsort(self.item_ids_, kind="stable")
        sorted_ids = self.item_ids_[order]
        self.unknown_: list[str] = []
        resolved = []
        for ids in (self.curated, self.sponsored):
            ids_arr = np.asarray(ids, dtype=str)
            pos = np.searchsorted(sorted_ids, ids_arr) if len(ids_arr) else np.empty(0, np.int64)
            pos = np.minimum(pos, max(len(sorted_ids) - 1, 0))
            found = (sorted_ids[pos] == ids_arr) if len(sorted_ids) else np.zeros(len(ids_arr), bool)
            self.unknown_ += ids_arr[~found].tolist()
            resolved.append(order[pos[found]].astype(np.int32))
        curated, sponsored = resolved
        curated = curated[~member(curated, sponsored)]
        items = np.concatenate([curated, sponsored])
        scores = np.concatenate(
            [1.0 / (1.0 + np.arange(len(curated))), 1.0 / (1.0 + np.arange(len(sponsored)))]
        )
        reasons = np.array(["editorial"] * len(curated) + ["sponsored"] * len(sponsored), dtype=object)
        order = np.argsort(-scores, kind="stable")
        _, first = np.unique(items[order], return_index=True)  # duplicates within a list: keep the first
        keep = order[np.sort(first)]
        self.items_, self.scores_, self.reasons_ = items[keep], scores[keep].astype(np.float32), reasons[keep]

    def set_lists(self, curated: list[str] | None = None, sponsored: list[str] | None = None) -> None:
        """Replace the curated and/or sponsored list at runtime (``None`` keeps a list as it is)."""
        self._check()
        if curated is not None:
            self.curated = list(curated)
        if sponsored is not None:
            self.sponsored = list(sponsored)
        self._resolve()

    def retrieve(self, query: RetrievalQuery, k: int) -> list[Candidates]:
        """The lists' items for every user (seen items excluded), the first of each list first."""
        self._check(query, k)
        H = sp.csr_matrix(query.histories)
        out = []
        for u in range(len(query)):
            seen = seen_of(H, u)
            idx = np.flatnonzero(~member(self.items_, seen))[:k]
            out.append(candidates(self.items_[idx], self.scores_[idx], self.reasons_[idx]))
        return out

    def _state(self) -> dict[str, Any]:
        return {"item_ids": self.item_ids_}

    def _set_state(self, arrays: dict[str, Any], meta: dict[str, Any]) -> None:
        self.item_ids_ = arrays["item_ids"].astype(str)
        self._resolve()
