"""Daily metrics of a simulation, from the slots served that day (monitors reused from monitoring).

Per simulated day (:func:`day_metrics`); CTR, coverage, category entropy, exposure Gini and the
new-item share are :mod:`funnel.monitoring.quality`'s functions, applied to the day's slots:

- ``pages``, ``slots``, ``clicks``, ``active_users`` (users who asked for a page), ``ctr``;
- ``engagement`` (clicks per active user), ``retention`` (users still here / users arrived, at
  the day's end), ``users_left`` (departures that day);
- ``coverage`` (distinct items served / items available at the day's end), ``category_entropy``
  (bits, mean over pages), ``exposure_gini`` (over the available items);
- ``new_item_click_share`` (clicks on items published less than 7 days before) and
  ``new_item_slot_share`` (the same for slots);
- ``new_items_to_100`` (items published during the run that reached their 100th impression that
  day) and ``hours_to_100`` (their median hours from publication to it; null when none);
- ``expected_clicks`` (mean over pages of Σ true click probability of the served page, without
  fatigue), ``oracle_clicks`` (the same for the oracle's page) and ``regret`` (their difference).

Example:
    >>> import numpy as np
    >>> acc = DayAccumulator()
    >>> acc.add(users=np.array([0, 1]), times=np.array([5, 6]), pages=np.array([[0, 1], [1, 2]]),
    ...         clicked=np.array([[True, False], [False, False]]), expected=np.array([0.5, 0.2]),
    ...         oracle=np.array([0.7, 0.4]))
    >>> acc.slots(), acc.clicks(), round(float(acc.regret()), 3)
    (4, 1, 0.2)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp

from funnel.monitoring.quality import (
    DAY_MS,
    NEW_ITEM_DAYS,
    category_entropy,
    category_matrix,
    coverage,
    exposure_gini,
    new_item_share,
)
from funnel.monitoring.quality import ctr as slot_ctr

REACH_IMPRESSIONS = 100
"""The impressions a new item has to reach (``hours_to_100``)."""


class DayAccumulator:
    """The day's served pages, flattened to slots as they come (see :meth:`add`)."""

    def __init__(self) -> None:
        self._parts: dict[str, list[np.ndarray]] = {
            k: [] for k in ("user", "time", "item", "page", "clicked", "expected", "oracle")
        }
        self.n_pages = 0

    def add(
        self,
        users: np.ndarray,
        times: np.ndarray,
        pages: np.ndarray,
        clicked: np.ndarray,
        expected: np.ndarray,
        oracle: np.ndarray,
    ) -> None:
        """One batch: per page its user, time, items (``-1`` pads), clicked slots and expected clicks."""
        valid = pages >= 0
        per_page = valid.sum(axis=1)
        page_ids = self.n_pages + np.arange(len(users))
        self._parts["user"].append(users)
        self._parts["time"].append(np.repeat(times, per_page))
        self._parts["item"].append(pages[valid])
        self._parts["page"].append(np.repeat(page_ids, per_page))
        self._parts["clicked"].append(clicked[valid])
        self._parts["expected"].append(expected)
        self._parts["oracle"].append(oracle)
        self.n_pages += len(users)

    def get(self, name: str) -> np.ndarray:
        """One concatenated column (``user``/``expected``/``oracle`` per page, the rest per slot)."""
        parts = self._parts[name]
        return np.concatenate(parts) if parts else np.zeros(0)

    def slots(self) -> int:
        """Slots served."""
        return len(self.get("item"))

    def clicks(self) -> int:
        """Slots clicked."""
        return int(self.get("clicked").sum())

    def regret(self) -> float:
        """Mean over pages of oracle minus served expected clicks (NaN without pages)."""
        if not self.n_pages:
            return float("nan")
        return float(np.mean(self.get("oracle") - self.get("expected")))


def item_categories(item_categories: np.ndarray) -> sp.csr_matrix:
    """The category weight matrix of the truth's items (row = item), for ``category_entropy``."""
    cats = [tuple(str(c) for c in row if c >= 0) for row in np.asarray(item_categories).tolist()]
    return category_matrix(cats)[0]


def day_metrics(
    day: int,
    acc: DayAccumulator,
    categories: sp.csr_matrix,
    published_ms: np.ndarray,
    available: np.ndarray,
    retention: float,
    users_left: int,
    reached: np.ndarray,
) -> dict[str, Any]:
    """The day's metrics (module docstring); ``reached``: hours to 100 of items reaching it today."""
    items = acc.get("item").astype(np.int64)
    clicked = acc.get("clicked").astype(bool)
    times = acc.get("time")
    active = len(np.unique(acc.get("user")))
    counts = np.bincount(items, minlength=len(available))[available]
    max_age = NEW_ITEM_DAYS * DAY_MS
    pub = published_ms.astype(np.float64)
    row = {
        "day": day,
        "pages": acc.n_pages,
        "slots": len(items),
        "clicks": int(clicked.sum()),
        "active_users": active,
        "ctr": slot_ctr(clicked),
        "engagement": float(clicked.sum() / active) if active else math.nan,
        "retention": retention,
        "users_left": users_left,
        "coverage": coverage(items, available),
        "category_entropy": category_entropy(acc.get("page"), categories[items]),
        "exposure_gini": exposure_gini(counts),
        "new_item_click_share": new_item_share(times[clicked], pub[items[clicked]], max_age),
        "new_item_slot_share": new_item_share(times, pub[items], max_age),
        "new_items_to_100": len(reached),
        "hours_to_100": float(np.median(reached)) if len(reached) else math.nan,
        "expected_clicks": float(np.mean(acc.get("expected"))) if acc.n_pages else math.nan,
        "oracle_clicks": float(np.mean(acc.get("oracle"))) if acc.n_pages else math.nan,
        "regret": acc.regret(),
    }
    return {k: _clean(v) for k, v in row.items()}


def _clean(value: Any) -> Any:
    """Floats rounded to 9 significant digits (stable text), NaN as ``None`` (valid JSON)."""
    if isinstance(value, float):
        return None if not math.isfinite(value) else float(f"{value:.9g}")
    return value


class ReachTracker:
    """Impressions per item and when items published during the run reached ``REACH_IMPRESSIONS``."""

    def __init__(self, published_ms: np.ndarray, start_ms: int) -> None:
        self.published = np.asarray(published_ms, dtype=np.int64)
        self.tracked = self.published >= start_ms
        self.counts = np.zeros(len(self.published), dtype=np.int64)
        self.reached_ms = np.full(len(self.published), -1, dtype=np.int64)

    def add(self, items: np.ndarray, at_ms: int) -> None:
        """Count a batch's served items, served at ``at_ms``."""
        self.counts += np.bincount(items[items >= 0], minlength=len(self.counts))
        new = self.tracked & (self.reached_ms < 0) & (self.counts >= REACH_IMPRESSIONS)
        self.reached_ms[new] = at_ms

    def hours(self, since_ms: int, until_ms: int) -> np.ndarray:
        """Hours to reach it, for tracked items that reached it in ``[since_ms, until_ms)``."""
        sel = (self.reached_ms >= since_ms) & (self.reached_ms < until_ms)
        return (self.reached_ms[sel] - self.published[sel]) / 3_600_000.0

    def summary(self) -> dict[str, Any]:
        """Over the run: items tracked, share that reached it, median hours (null when none did)."""
        n = int(self.tracked.sum())
        done = self.tracked & (self.reached_ms >= 0)
        hours = (self.reached_ms[done] - self.published[done]) / 3_600_000.0
        return {
            "new_items": n,
            "reached_100_share": _clean(float(done.sum() / n) if n else math.nan),
            "median_hours_to_100": _clean(float(np.median(hours)) if len(hours) else math.nan),
        }
