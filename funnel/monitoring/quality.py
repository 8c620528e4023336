"""Quality monitors over served slots: CTR, coverage, category entropy, exposure Gini, new items, sources.

Each monitor is a small function over arrays (hand-checkable; see ``tests/unit/test_monitoring_quality.py``),
and :func:`quality` evaluates them all on the slots an :class:`~funnel.monitoring.frame.EventFrame`
served in one time window; :func:`quality_series` slides that window over time.

- **CTR**: clicked slots / served slots (a slot is clicked when a click names its request and item).
- **catalogue coverage**: distinct listed items served / listed items in the catalogue.
- **category entropy** (bits): per served page, the entropy of its items' categories (an item in
  ``k`` categories adds ``1/k`` to each; uncategorised items are left out), averaged over pages.
  Low entropy = pages of one category.
- **exposure Gini**: Gini coefficient of the served-slot counts over every listed item (unserved
  items count 0): 0 = every listed item shown equally often, near 1 = a few items take everything.
- **new-item exposure share**: served slots whose item was published less than
  ``new_item_days`` before the slot was served / served slots.
- **per-source contribution**: per source label of the slots (the impression's ``sources``), its
  share of the clicked slots, its CTR and its slot count.

Example:
    >>> exposure_gini(np.array([0, 0, 0, 4])), exposure_gini(np.array([2, 2]))
    (0.75, 0.0)
    >>> round(category_entropy(np.array([0, 0, 1, 1]), [("x",), ("y",), ("x",), ("x",)]), 3)
    0.5
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from funnel.monitoring.frame import Catalogue, EventFrame

DAY_MS = 86_400_000
NEW_ITEM_DAYS = 7.0
"""Default age below which an item counts as new, in days."""


def ctr(clicked: np.ndarray) -> float:
    """Fraction of served slots clicked (NaN without slots)."""
    return float(np.mean(clicked)) if len(clicked) else float("nan")


def coverage(rows: np.ndarray, listed: np.ndarray) -> float:
    """Distinct listed catalogue rows among ``rows`` (-1: not in the catalogue) / listed items."""
    n_listed = int(listed.sum())
    if n_listed == 0:
        return float("nan")
    shown = np.unique(rows[rows >= 0])
    return float(listed[shown].sum() / n_listed)


def exposure_gini(counts: np.ndarray) -> float:
    """Gini coefficient of non-negative ``counts`` (NaN when empty or all zero)."""
    x = np.sort(np.asarray(counts, dtype=np.float64))
    n, total = len(x), float(x.sum()) if len(x) else 0.0
    if n == 0 or total == 0.0:
        return float("nan")
    ranks = np.arange(1, n + 1)
    return float(2.0 * np.dot(ranks, x) / (n * total) - (n + 1) / n)


def category_matrix(categories: list[tuple[str, ...]]) -> tuple[sp.csr_matrix, list[str]]:
    """Rows of category weights (``1/k`` for each of an item's ``k`` categories) and the category names."""
    names: dict[str, int] = {}
    rows, cols, vals = [], [], []
    for r, cats in enumerate(categories):
        uniq = list(dict.fromkeys(cats))
        for c in uniq:
            rows.append(r)
            cols.append(names.setdefault(c, len(names)))
            vals.append(1.0 / len(uniq))
    m = sp.csr_matrix((vals, (rows, cols)), shape=(len(categories), max(len(names), 1)))
    return m, list(names)


def category_entropy(slot_list: np.ndarray, categories: list[tuple[str, ...]] | sp.csr_matrix) -> float:
    """Mean over pages of the entropy (bits) of the page's categories; see the module docstring.

    ``slot_list``: the page of each slot; ``categories``: per slot, its item's categories (or the
    matrix of :func:`category_matrix` with one row per slot). NaN when no page has a category.
    """
    weights = categories if sp.issparse(categories) else category_matrix(categories)[0]  # type: ignore[arg-type]
    if len(slot_list) == 0:
        return float("nan")
    _, page = np.unique(slot_list, return_inverse=True)
    pages = sp.csr_matrix(
        (np.ones(len(page)), (page, np.arange(len(page)))), shape=(int(page.max()) + 1, len(page))
    )
    per_page = np.asarray((pages @ weights).todense())
    totals = per_page.sum(axis=1)
    keep = totals > 0
    if not keep.any():
        return float("nan")
    p = per_page[keep] / totals[keep, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log2(p), 0.0).sum(axis=1)
    return float(h.mean())


def new_item_share(slot_ts: np.ndarray, published_at: np.ndarray, max_age_ms: float) -> float:
    """Fraction of slots whose item was published in ``(ts - max_age_ms, ts]`` (NaN published: not new)."""
    if len(slot_ts) == 0:
        return float("nan")
    age = slot_ts.astype(np.float64) - published_at
    return float(np.mean((age >= 0) & (age < max_age_ms)))


@dataclass
class SourceStat:
    """One source's served slots, clicked slots, CTR and share of all clicked slots."""

    slots: int
    clicks: int
    ctr: float
    click_share: float


def source_contribution(
    slot_source: np.ndarray, clicked: np.ndarray, names: list[str]
) -> dict[str, SourceStat]:
    """Per source label (codes into ``names``) that served a slot: see :class:`SourceStat`."""
    slots = np.bincount(slot_source, minlength=len(names))
    clicks = np.bincount(slot_source, weights=clicked.astype(np.float64), minlength=len(names))
    total = clicks.sum()
    return {
        names[k]: SourceStat(
            int(slots[k]),
            int(clicks[k]),
            float(clicks[k] / slots[k]),
            float(clicks[k] / total) if total else 0.0,
        )
        for k in np.flatnonzero(slots)
    }


@dataclass
class QualitySnapshot:
    """Every quality monitor over the slots served in ``[start_ms, end_ms)``."""

    start_ms: int
    end_ms: int
    pages: int
    slots: int
    clicks: int
    ctr: float
    coverage: float
    category_entropy_bits: float
    exposure_gini: float
    new_item_share: float
    sources: dict[str, SourceStat] = field(default_factory=dict)


class QualityMonitor:
    """The monitors of one frame against one catalogue (the item alignment is computed once)."""

    def __init__(self, frame: EventFrame, catalogue: Catalogue, new_item_days: float = NEW_ITEM_DAYS) -> None:
        self.frame, self.catalogue = frame, catalogue
        self.max_age_ms = new_item_days * DAY_MS
        self.rows = catalogue.align(frame.items)  # catalogue row of each frame item
        known = self.rows >= 0
        self.published = np.full(len(frame.items), np.nan)
        self.published[known] = catalogue.published_at[self.rows[known]]
        cats = [catalogue.categories[r] if r >= 0 else () for r in self.rows.tolist()]
        self.weights, _ = category_matrix(cats)

    def at(self, start_ms: int, end_ms: int) -> QualitySnapshot:
        """All monitors over the slots served in ``[start_ms, end_ms)``."""
        f, s = self.frame, self.frame.span(start_ms, end_ms)
        items, clicked = f.slot_item[s], f.slot_clicked[s]
        rows = self.rows[items]
        listed = self.catalogue.listed
        if self.catalogue.n_listed:
            on = rows[rows >= 0]
            counts = np.bincount(on[listed[on]], minlength=len(listed))[listed]
        else:  # no catalogue: the served items are the universe
            counts = np.bincount(items)[np.unique(items)] if len(items) else np.zeros(0)
        return QualitySnapshot(
            start_ms=int(start_ms),
            end_ms=int(end_ms),
            pages=len(np.unique(f.slot_list[s])),
            slots=len(items),
            clicks=int(clicked.sum()),
            ctr=ctr(clicked),
            coverage=coverage(rows, listed),
            category_entropy_bits=category_entropy(f.slot_list[s], self.weights[items]),
            exposure_gini=exposure_gini(counts),
            new_item_share=new_item_share(f.slot_ts[s], self.published[items], self.max_age_ms),
            sources=source_contribution(f.slot_source[s], clicked, f.sources),
        )

    def series(self, window_ms: int, step_ms: int, end_ms: int | None = None) -> list[QualitySnapshot]:
        """Snapshots of windows ``window_ms`` long ending every ``step_ms`` up to ``end_ms``.

        The first window ends ``window_ms`` after the first slot (or at it, when the data spans
        less than one window); the last ends at ``end_ms`` (default: just after the last slot).
        """
        bounds = self.frame.time_range()
        if bounds is None:
            return []
        end_ms = bounds[1] + 1 if end_ms is None else int(end_ms)
        first = min(bounds[0] + window_ms, end_ms)
        n = max(0, (end_ms - first) // step_ms)
        ends = end_ms - step_ms * np.arange(n, -1, -1)
        return [self.at(int(e) - window_ms, int(e)) for e in ends]


def quality(
    frame: EventFrame, catalogue: Catalogue, start_ms: int, end_ms: int, new_item_days: float = NEW_ITEM_DAYS
) -> QualitySnapshot:
    """Every monitor over the slots ``frame`` served in ``[start_ms, end_ms)``."""
    return QualityMonitor(frame, catalogue, new_item_days).at(start_ms, end_ms)
