"""``FreshnessBoost``: a multiplicative score boost for recently published items, decaying linearly.

An item published ``a`` days before the request (``request.now_ms``, else the newest candidate's
publish time) gets the factor ``1 + boost · max(0, 1 − a / days)`` — ``1 + boost`` when just out,
``1`` from ``days`` on; an item without ``published_at`` gets 1, one published after the request
time counts as just out. The factor is applied sign-safely (:func:`~funnel.rerank.state.scale`).

Example:
    >>> import pyarrow as pa
    >>> from funnel.rerank.context import PageRequest, Slate, UserContext
    >>> from funnel.rerank.items import ItemPolicyTable
    >>> from funnel.rerank.state import RerankState
    >>> ts = pa.array([10 * DAY_MS, 5 * DAY_MS, 0], pa.timestamp("ms", "UTC"))
    >>> t = ItemPolicyTable.from_catalogue(pa.table({"item_id": ["a", "b", "c"], "published_at": ts}))
    >>> req = PageRequest(now_ms=10 * DAY_MS)
    >>> st = RerankState.start(t, Slate(np.arange(3), np.ones(3)), UserContext(), req)
    >>> FreshnessBoost(boost=0.5, days=10).prepare(st)
    >>> st.score.tolist(), st.traces["freshness"].rescored
    ([1.5, 1.25, 1.0], [0, 1])
"""

from __future__ import annotations

import numpy as np

from funnel.core.errors import ConfigError
from funnel.rerank.state import BaseStep, RerankState, scale

DAY_MS = 86_400_000


class FreshnessBoost(BaseStep):
    """Boost new items by up to ``boost`` (a fraction), fading out over ``days`` after publication."""

    name = "freshness"

    def __init__(self, boost: float = 0.2, days: float = 7.0) -> None:
        if boost < 0 or days <= 0:
            raise ConfigError(f"freshness boost must be >= 0 and days > 0, got {boost}, {days}")
        self.boost, self.days = boost, days

    def factor(self, published_ms: np.ndarray, now_ms: int) -> np.ndarray:
        """The boost factor of items published at ``published_ms`` (``INT64_MIN`` = unknown)."""
        known = published_ms > np.iinfo(np.int64).min
        age = np.maximum(now_ms - np.where(known, published_ms, now_ms), 0) / DAY_MS
        return np.where(known, 1.0 + self.boost * np.maximum(0.0, 1.0 - age / self.days), 1.0)

    def prepare(self, state: RerankState) -> None:
        """Scale the scores of the fresh candidates."""
        if self.boost == 0:
            return
        f = self.factor(state.table.published_ms[state.items], state.now_ms())
        boosted = f > 1.0
        if boosted.any():
            state.score[boosted] = scale(state.score[boosted], f[boosted])
            state.trace(self.name).rescored.extend(state.items[boosted & state.alive].tolist())
