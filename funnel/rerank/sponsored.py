"""``SponsoredSlots``: sponsored items only at allowed positions, and at most ``max_count`` in the top N.

Sponsored items compete on score like any other, but only at ``positions`` (0-based) and only while
fewer than ``max_count`` are placed in the first ``top_n`` positions; elsewhere the position goes
to an organic item. Sponsored items pass the hard filters like every item (they never displace
policy), and exploration never picks them.

Example:
    >>> import pyarrow as pa
    >>> from funnel.rerank.context import PageRequest, Slate, UserContext
    >>> from funnel.rerank.items import ItemPolicyTable
    >>> from funnel.rerank.state import RerankState
    >>> t = ItemPolicyTable.from_catalogue(pa.table({"item_id": ["a", "b"],
    ...     "attributes": ['{"sponsored": true}', None]}))
    >>> st = RerankState.start(t, Slate(np.arange(2), np.ones(2)), UserContext(), PageRequest(k=2))
    >>> step = SponsoredSlots(positions=(1,), max_count=1); step.prepare(st)
    >>> step.allowed(st, 0).tolist(), step.allowed(st, 1)
    ([False, True], None)
"""

from __future__ import annotations

import numpy as np

from funnel.core.errors import ConfigError
from funnel.rerank.state import BaseStep, RerankState


class SponsoredSlots(BaseStep):
    """Keeps sponsored items to ``positions`` and to ``max_count`` within the top ``top_n``."""

    name = "sponsored"

    def __init__(self, positions: tuple[int, ...] = (2, 9), max_count: int = 2, top_n: int = 20) -> None:
        if any(p < 0 for p in positions) or max_count < 0 or top_n < 1:
            raise ConfigError("sponsored positions and max_count must be >= 0, top_n >= 1")
        self.positions, self.max_count, self.top_n = tuple(sorted(set(positions))), max_count, top_n

    def prepare(self, state: RerankState) -> None:
        """Gather the sponsored flags; none placed yet."""
        sponsored = state.table.sponsored[state.items]
        state.memo[self.name] = {"organic": ~sponsored, "count": 0, "any": bool(sponsored.any())}

    def allowed(self, state: RerankState, position: int) -> np.ndarray | None:
        """Organic items only, unless ``position`` is a sponsored slot with the count not reached."""
        memo = state.memo[self.name]
        if not memo["any"]:
            return None
        full = position < self.top_n and memo["count"] >= self.max_count
        return memo["organic"] if position not in self.positions or full else None

    def placed(self, state: RerankState, position: int, candidate: int) -> None:
        """Count a sponsored item placed in the top ``top_n``."""
        memo = state.memo[self.name]
        if not memo["organic"][candidate]:
            state.trace(self.name).inserted.append(int(state.items[candidate]))
            if position < self.top_n:
                memo["count"] += 1
