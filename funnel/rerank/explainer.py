"""``Explainer``: the re-ranking step that gives every item of a page a :class:`Reason`.

The reason comes from the item's strongest signal (see :mod:`funnel.rerank.explanations` for the
codes): the sponsored disclosure always wins; then a retrieval anchor ("Because you watched
<title>"); then the retrieval reason code — ``popular_in_segment`` → "Popular in <country>",
``trending`` / ``popular`` → "Trending now", ``new`` → "New from <creator>"; else "Picked for you".
"""

from __future__ import annotations

import numpy as np

from funnel.rerank.context import Page
from funnel.rerank.explanations import (
    ANCHORED_CODES,
    BECAUSE_YOU_WATCHED,
    NEW_FROM_CREATOR,
    PICKED_FOR_YOU,
    POPULAR,
    POPULAR_IN_COUNTRY,
    SPONSORED,
    TRENDING,
    Reason,
)
from funnel.rerank.items import ItemPolicyTable
from funnel.rerank.state import BaseStep, RerankState


class Explainer(BaseStep):
    """Re-ranking step: a :class:`Reason` for every item of the page (see the module docstring).

    Example:
        >>> import pyarrow as pa
        >>> from funnel.rerank.context import PageRequest, Slate, UserContext
        >>> from funnel.rerank.items import ItemPolicyTable
        >>> from funnel.rerank.state import RerankState
        >>> t = ItemPolicyTable.from_catalogue(pa.table({"item_id": ["a", "b"], "title": ["Up", "Heat"],
        ...                                              "creator_id": ["pixar", None]}))
        >>> slate = Slate(np.array([0, 1]), np.ones(2), np.array(["new", "because_you_watched"]), [-1, 0])
        >>> st = RerankState.start(t, slate, UserContext(country="FR"), PageRequest(k=2))
        >>> [r.text for r in Explainer().reasons(st, np.array([0, 1]), np.zeros(2, bool))]
        ['New from pixar', 'Because you watched Up']
    """

    name = "explanations"

    def finish(self, state: RerankState, page: Page) -> None:
        """Set ``page.reasons``."""
        page.reasons = self.reasons(state, np.asarray(state.placed, np.int64), page.sponsored)

    def reasons(self, state: RerankState, candidates: np.ndarray, sponsored: np.ndarray) -> list[Reason]:
        """The reason of each of ``candidates`` (slate positions) given their sponsored flags."""
        t, slate = state.table, state.slate
        out = []
        for c, is_sponsored in zip(candidates.tolist(), sponsored.tolist(), strict=True):
            code, anchor = str(slate.reason[c]), int(slate.anchor[c])
            out.append(self._reason(t, code, anchor, int(slate.items[c]), is_sponsored, state.user.country))
        return out

    @staticmethod
    def _reason(
        t: ItemPolicyTable, code: str, anchor: int, item: int, sponsored: bool, country: str | None
    ) -> Reason:
        if sponsored:
            return Reason("Sponsored", SPONSORED)
        if code in ANCHORED_CODES and 0 <= anchor < len(t.titles) and t.titles[anchor]:
            return Reason(f"Because you watched {t.titles[anchor]}", BECAUSE_YOU_WATCHED, anchor)
        if code == "popular_in_segment" and country:
            return Reason(f"Popular in {country}", POPULAR_IN_COUNTRY)
        if code in ("popular_in_segment", TRENDING, POPULAR):
            return Reason("Trending now", TRENDING)
        creator = int(t.creator[item])
        if code == "new" and creator >= 0:
            return Reason(f"New from {t.creator_names[creator]}", NEW_FROM_CREATOR)
        return Reason("Picked for you", PICKED_FOR_YOU)
