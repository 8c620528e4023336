"""``ease``: EASE item-to-item regression as a candidate source, for catalogues it fits.

EASE (Steck, 2019) is the strongest single collaborative model on small and mid-sized catalogues
(see the baselines table in the README), so the ranker gets its score as a feature wherever the
catalogue allows it. Fitting is :class:`~funnel.retrieval.ease.EASERecommender`'s (a dense
item x item solve, refused above ``max_items`` active items with a clear error — leave the
source out of the configuration for such catalogues). At request time the user's current history
row is scored (fold-in, so fresh events count without a refit) and the top ``k`` unseen items
are returned. Users with an empty history get nothing. Reason code ``picked_for_you``.

Example:
    >>> import numpy as np, pyarrow as pa
    >>> from funnel.retrieval.sources.common import retrieval_data
    >>> from funnel.retrieval.source import RetrievalQuery
    >>> t = pa.table({"user_id": ["a", "a", "b", "b", "c"], "item_id": ["x", "y", "x", "y", "x"]})
    >>> data = retrieval_data(t)
    >>> src = EASESource(l2=1.0).fit(data)
    >>> got = src.retrieve(RetrievalQuery(["c"], data.X[[2]], [np.array([0])], [{}], 0), 5)[0]
    >>> got.items.tolist(), got.reason.tolist()
    ([1], ['picked_for_you'])
"""

from __future__ import annotations

from typing import Any, Self

from funnel.retrieval.ease import EASERecommender
from funnel.retrieval.source import Candidates, RetrievalData, RetrievalQuery
from funnel.retrieval.sources.common import BaseSource, candidates

REASON = "picked_for_you"


class EASESource(BaseSource):
    """Top unseen items of the EASE scores of each user's current history.

    Args:
        l2, max_items: the :class:`~funnel.retrieval.ease.EASERecommender` ones.

    Attributes:
        model_: the fitted recommender.
    """

    name = "ease"

    def __init__(self, l2: float = 500.0, max_items: int = 20_000) -> None:
        self.l2 = l2
        self.max_items = max_items

    def fit(self, data: RetrievalData) -> Self:
        """Solve EASE on ``data.X``."""
        self.model_ = EASERecommender(self.l2, self.max_items).fit(data.X)
        self.n_items_ = self.model_.n_items_
        return self

    def retrieve(self, query: RetrievalQuery, k: int) -> list[Candidates]:
        """Up to ``k`` unseen items per user, best first (empty for an empty history)."""
        self._check(query, k)
        H = query.histories.tocsr()
        items, scores = self.model_.recommend(H, min(k, self.n_items_), exclude=H)
        out = []
        for u in range(len(query)):
            if H.indptr[u + 1] == H.indptr[u]:
                out.append(Candidates.empty())
                continue
            keep = (items[u] >= 0) & (scores[u] > 0)
            out.append(candidates(items[u][keep], scores[u][keep], REASON))
        return out

    def _state(self) -> dict[str, Any]:
        return {"B": self.model_.B_, "item_index": self.model_.item_index_}

    def _set_state(self, arrays: dict[str, Any], meta: dict[str, Any]) -> None:
        self.model_ = EASERecommender(self.l2, self.max_items)
        self.model_._set_state(arrays)
        self.model_.n_items_ = self.n_items_
