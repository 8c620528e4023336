"""``RequestTrace``: what one request went through — retrieval, features, heads, re-ranking, timings.

A trace exists only when a caller asks for one (``GET /v1/recommendations?debug=true``): every
stage takes an optional ``trace`` and, when it is ``None`` (the normal path), records nothing and
computes nothing extra. When it is given, the stages fill it in order:

* retrieval (:meth:`RequestTrace.record_sources`): per source its candidate count, its error when
  it failed, was late or was skipped, and its :data:`TOP_PER_SOURCE` best candidates with their
  source score and rank; then the merged candidate count;
* ranking (:meth:`record_ranking`): every candidate best first with its final score, each head's
  probability and its feature row (``NaN`` where a feature is missing), the strongest source and
  merge position; the baseline and the fallbacks record their list with scores only;
* re-ranking (:meth:`record_rerank`): one :class:`~funnel.rerank.context.StepTrace` per step
  (removed items with a reason, moved, inserted, rescored), explored and sponsored items, and the
  popular top-up; later stages add their own steps (``listed`` in the pipeline, ``request`` and
  ``popular_top_up`` in the API service);
* the end (:meth:`finish`): the served items and the id map that names them.

``path`` says which stage produced the list (``ranking``, ``retrieval_order`` when the ranker
failed, ``baseline`` for a baseline-only bundle or a failed ranking pipeline, ``popular`` when the
whole pipeline failed) and ``notes`` why. Arrays stay NumPy (item indices); the HTTP route turns
the trace into JSON. A trace follows one user.

Example:
    >>> from funnel.retrieval.sources.common import candidates
    >>> t = RequestTrace()
    >>> t.record_sources({"trending": [candidates(np.array([3, 1]), np.array([9.0, 4.0]), "trending")]}, {})
    >>> t.sources[0].name, t.sources[0].count, t.sources[0].items.tolist()
    ('trending', 2, [3, 1])
    >>> t.record_ranking(np.array([1, 3]), np.array([0.7, 0.2]))
    >>> t.finish(np.array([3]), None)
    >>> t.detail_rows(top=1).tolist()    # the best one, and the served one (ranked second)
    [0, 1]
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from funnel.rerank.context import Page, StepTrace
from funnel.retrieval.source import Candidates

if TYPE_CHECKING:
    from funnel.ranking.features import FeatureMatrix
    from funnel.retrieval.merge import MergedCandidates

TOP_PER_SOURCE = 10
"""Best candidates kept per retrieval source."""
TOP_RANKED = 10
"""Best-ranked candidates detailed (features, heads) beside the served ones."""


@dataclass
class SourceTrace:
    """One retrieval source in one request: ``count`` candidates, the first ``items`` (best first)."""

    name: str
    count: int
    error: str | None
    items: np.ndarray
    scores: np.ndarray


@dataclass
class RankedTrace:
    """The candidates best first as the ranker (or a fallback) ordered them, before re-ranking.

    Attributes:
        items: item indices; scores: the final score of each (``Σ w_h · P(h)`` for the ranker).
        heads: head name -> probability per candidate (empty without a ranker).
        features: ``float32 [n, F]`` feature rows or ``None``; feature_names: their columns.
        weights: the head weights of the final score.
        source: the strongest retrieval source per candidate, or ``None``.
        merge_position: each candidate's position in the merged retrieval list, or ``None``.
    """

    items: np.ndarray
    scores: np.ndarray
    heads: dict[str, np.ndarray] = field(default_factory=dict)
    features: np.ndarray | None = None
    feature_names: tuple[str, ...] = ()
    weights: dict[str, float] = field(default_factory=dict)
    source: np.ndarray | None = None
    merge_position: np.ndarray | None = None


@dataclass
class RequestTrace:
    """The trace of one request; see the module docstring."""

    path: str = "ranking"
    fallback: str | None = None
    notes: list[str] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    sources: list[SourceTrace] = field(default_factory=list)
    merged: int | None = None
    ranked: RankedTrace | None = None
    steps: list[StepTrace] = field(default_factory=list)
    explored: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    sponsored: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    served: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    ids: Any = None
    """What names the item indices (an :class:`~funnel.core.idmap.IdMap`: ``keys_of``)."""
    _mark: float = field(default_factory=time.perf_counter, repr=False)

    def mark(self) -> None:
        """Start timing the next stage now."""
        self._mark = time.perf_counter()

    def lap(self, stage: str) -> None:
        """Add the time since the last mark or lap to ``stage`` (ms) and start the next one."""
        now = time.perf_counter()
        self.timings_ms[stage] = self.timings_ms.get(stage, 0.0) + (now - self._mark) * 1e3
        self._mark = now

    def fell_back(self, path: str, why: BaseException | str) -> None:
        """The list now comes from ``path``, because of ``why`` (an exception or a sentence).

        The re-ranking record of a failed attempt is dropped (the list did not go through it);
        what retrieval recorded stays, as evidence.
        """
        self.path = path
        if path in ("baseline", "popular"):
            self.steps, self.explored, self.sponsored = [], np.zeros(0, np.int64), np.zeros(0, np.int64)
        self.notes.append(
            f"{path}: {why}" if isinstance(why, str) else f"{path}: {type(why).__name__}: {why}"
        )

    def record_sources(
        self, per_source: Mapping[str, Sequence[Candidates]], errors: Mapping[str, str]
    ) -> None:
        """Each source's lists (the first user's top candidates) and errors, as the retriever got them."""
        self.sources = []
        for name, lists in per_source.items():
            first = lists[0] if len(lists) else Candidates.empty()
            self.sources.append(
                SourceTrace(
                    name,
                    int(sum(len(c) for c in lists)),
                    errors.get(name),
                    np.asarray(first.items[:TOP_PER_SOURCE], np.int64),
                    np.asarray(first.scores[:TOP_PER_SOURCE], np.float64),
                )
            )

    def record_ranking(self, items: np.ndarray, scores: np.ndarray, **detail: Any) -> None:
        """The list best first before re-ranking; ``detail``: the other :class:`RankedTrace` fields."""
        self.ranked = RankedTrace(np.asarray(items, np.int64), np.asarray(scores, np.float64), **detail)

    def record_ranker(
        self,
        ranked: MergedCandidates,
        scores: np.ndarray,
        order: np.ndarray,
        heads: Mapping[str, np.ndarray],
        features: FeatureMatrix | None,
        weights: Mapping[str, float],
    ) -> None:
        """The ranker's list: ``ranked`` / ``scores`` best first; ``order``: their rows in ``heads`` etc."""
        self.record_ranking(
            ranked.items,
            scores,
            heads={h: np.asarray(p)[order] for h, p in heads.items()},
            features=None if features is None else features.values[order],
            feature_names=() if features is None else features.names,
            weights={h: float(weights.get(h, 0.0)) for h in heads},
            source=ranked.source_names(),
            merge_position=ranked.positions(),
        )

    def record_rerank(self, main: Page, page: Page) -> None:
        """The re-ranker's ``main`` page (its steps) and the ``page`` after the popular top-up."""
        self.steps.extend(main.trace)
        if len(page) > len(main):
            self.step("top_up").inserted.extend(page.items[len(main) :].tolist())
        self.explored = np.asarray(page.items[page.explored], np.int64)
        self.sponsored = np.asarray(page.items[page.sponsored], np.int64)
        self.lap("rerank")

    def step(self, name: str) -> StepTrace:
        """The trace of step ``name`` (appended on first use)."""
        for step in self.steps:
            if step.step == name:
                return step
        self.steps.append(StepTrace(name))
        return self.steps[-1]

    def finish(self, served: np.ndarray, ids: Any) -> None:
        """The served item indices and the id map naming indices."""
        self.served, self.ids = np.asarray(served, np.int64), ids

    def detail_rows(self, top: int = TOP_RANKED) -> np.ndarray:
        """Rows of the ranked list worth detailing: the ``top`` best and every served one, in rank order."""
        if self.ranked is None:
            return np.zeros(0, np.int64)
        served = np.flatnonzero(np.isin(self.ranked.items, self.served))
        return np.union1d(np.arange(min(top, len(self.ranked.items))), served).astype(np.int64)
