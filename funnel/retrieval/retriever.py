"""``Retriever``: fit a configured set of sources, ask all of them, merge under per-user quotas.

Quotas are *weights*: for each user the weights of the configured sources are normalised to sum
to ``total`` (so any set of source names works, ``content`` and ``two_tower`` included). The
weights depend on the user's state — the cold-start policy:

* **cold** (empty history and no recent items): ``cold_quotas`` (default: trending with its
  segment lists, content — seeded by onboarding interests when the query has them — new items and
  editorial); collaborative sources are not even asked.
* **warming** (fewer than ``warm_threshold`` history items): ``quotas`` with each weight multiplied
  by ``warming_boost`` (default: content and item_knn ×2).
* **warm**: ``quotas``.

``quotas="learn"`` learns the warm users' weights in :meth:`Retriever.fit` (see
:mod:`funnel.retrieval.quotas`): the sources are fitted on the training data before a validation
cut, the weights chosen on the held-out tail's Recall@``total`` (greedy water-filling of slots, or
coordinate ascent of fusion weights), and the sources then refitted on all of the data — fitting
costs about twice as much. The learned weights (``learned_quotas_``) are saved with the retriever.

``merge_by`` picks how the lists become one: ``"quota"`` (default, :func:`~funnel.retrieval.merge.merge`:
each source a share of the slots, the union kept) or ``"fusion"`` (:func:`~funnel.retrieval.fusion.fuse`:
weighted rank fusion, where an item found by several sources ranks above one found by one; each
source with a positive weight is asked for ``overfetch × total``). With ``quotas="learn"`` the
weights are learned for the chosen merge. Learned fusion is what the retrieval report measures:
it beats every single source where the learned quota merge did not (see ``report``).

With quotas, each source is asked for ``ceil(overfetch × its largest quota in the batch)``
candidates so that overlap between sources still fills ``total``. A source that raises is dropped
for that batch (partial results; the error is kept in ``last_errors_``), and with a ``budget_ms``
the sources still waiting when it is spent are skipped the same way (the sources run one after
the other; put the cheap, essential ones first). With ``deadline_ms`` (the serving path) the
sources run concurrently instead (:mod:`funnel.retrieval.concurrent`) and each that has not
answered by the deadline is dropped for that batch and counted in ``late_counts_``. Items with
metadata only are retrievable through the metadata sources (content / two_tower).

Example:
    >>> import pyarrow as pa, scipy.sparse as sp
    >>> from funnel.retrieval.sources.common import retrieval_data
    >>> from funnel.retrieval.source import RetrievalQuery
    >>> t = pa.table({"user_id": ["a", "a", "b", "b", "c"], "item_id": ["x", "y", "x", "z", "z"]})
    >>> r = Retriever({"item_knn": {"shrink": 0.0}, "trending": {}}, total=10).fit(retrieval_data(t))
    >>> q = RetrievalQuery(["c", "new"], sp.csr_matrix([[0, 0, 1], [0, 0, 0]], dtype="float32"),
    ...                    [np.array([2]), np.array([], dtype=np.int64)], [{}, {}], 0)
    >>> [(m.items.tolist(), m.reason.tolist()) for m in r.retrieve(q)]
    [([0, 1], ['because_you_watched', 'trending']), ([0, 2, 1], ['trending', 'trending', 'trending'])]
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Self

import numpy as np
import pyarrow as pa

from funnel.core.artifacts import load_artifact, save_artifact
from funnel.core.errors import NotTrainedError, ValidationError
from funnel.core.steps import step
from funnel.retrieval.concurrent import ask_all
from funnel.retrieval.fusion import fuse
from funnel.retrieval.merge import DEFAULT_TOTAL, MergedCandidates, merge
from funnel.retrieval.quotas import learn_quotas
from funnel.retrieval.source import AskedInline, Candidates, GrowsCatalogue, RetrievalData, RetrievalQuery
from funnel.retrieval.sources.registry import load_source, make_source

KIND, FORMAT_VERSION = "retriever", 1
Inspect = Callable[[dict[str, list[Candidates]], dict[str, str]], None]
"""A look at the sources' lists and errors of one batch (see :meth:`Retriever.retrieve`)."""

DEFAULT_SOURCES: dict[str, dict[str, Any]] = {
    "als": {},
    "item_knn": {},
    "trending": {},
    "new_items": {},
    "editorial": {},
}
"""Sources fitted when none are configured (name -> hyper-parameters)."""
DEFAULT_QUOTAS = {
    "als": 0.35,
    "item_knn": 0.15,
    "content": 0.15,
    "two_tower": 0.3,
    "trending": 0.35,
    "new_items": 0.05,
    "editorial": 0.02,
}
"""Warm users' quota weights (normalised over the configured sources; unlisted names weigh 0.1).

Chosen on Recall@500/1000 of the retrieval report (MovieTweetings temporal and strat, synthetic
temporal): item-kNN's lists lose precision fast past a few hundred, so it gets less than ALS and
trending; with these the merged set beats every single source on all three.
"""
COLD_QUOTAS = {"trending": 0.5, "content": 0.3, "new_items": 0.1, "editorial": 0.05}
"""Quota weights of users without any history."""
WARMING_BOOST = {"content": 2.0, "item_knn": 2.0}
"""Weight multipliers for users with a handful of events."""


_DECLARED: dict[tuple[type, type], bool] = {}


def declares(source: object, capability: type) -> bool:
    """Whether ``source`` declares the runtime protocol ``capability``, cached per class.

    ``isinstance`` against a runtime protocol inspects every member on each call; the request
    path asks once per source and request.
    """
    key = (type(source), capability)
    known = _DECLARED.get(key)
    if known is None:
        known = _DECLARED[key] = isinstance(source, capability)
    return known


def grows_catalogue(source: object) -> bool:
    """Whether ``source`` declares :class:`GrowsCatalogue` (cached per class)."""
    return declares(source, GrowsCatalogue)


class Retriever:
    """Many sources, one merged candidate list per user.

    Args:
        sources: source name -> hyper-parameters (default :data:`DEFAULT_SOURCES`).
        quotas: warm users' weights per source name (default :data:`DEFAULT_QUOTAS`), or
            ``"learn"``: learned in ``fit`` on a validation split of the training data
            (sources are then asked for more than ``overfetch`` × quota if the learned quotas overlap).
        total: merged candidates per user.
        overfetch: each source returns this many times its quota.
        warm_threshold: users with fewer history items are "warming".
        cold_quotas: weights for users without history (default :data:`COLD_QUOTAS`).
        warming_boost: multipliers of ``quotas`` for warming users (default :data:`WARMING_BOOST`).
        budget_ms: time for the sources of one batch; once spent, the sources not yet asked (in
            configuration order) are skipped (``None``: no budget).
        deadline_ms: ask every source concurrently and drop those late for this deadline
            (``None``: one after the other, as ``budget_ms`` says).
        learn: with ``quotas="learn"``, keyword arguments of :func:`~funnel.retrieval.quotas.learn_quotas`
            (``protocol``, ``ratio``, ``max_users``, ``block``, ``seed``).
        merge_by: ``"quota"`` (slots per source, union) or ``"fusion"`` (weighted rank fusion; the
            quotas are then the sources' weights, each source asked for ``overfetch × total``).

    Attributes:
        sources_: name -> fitted source; last_errors_ / last_seconds_: per source, of the last batch.
        learned_quotas_: with ``quotas="learn"``, the learned weights (``fit`` or ``load``).
    """

    def __init__(
        self,
        sources: Mapping[str, Mapping[str, Any]] | None = None,
        quotas: Mapping[str, float] | str | None = None,
        total: int = DEFAULT_TOTAL,
        overfetch: float = 1.5,
        warm_threshold: int = 5,
        cold_quotas: Mapping[str, float] | None = None,
        warming_boost: Mapping[str, float] | None = None,
        budget_ms: float | None = None,
        learn: Mapping[str, Any] | None = None,
        merge_by: str = "quota",
        deadline_ms: float | None = None,
    ) -> None:
        self.sources = {k: dict(v) for k, v in (sources if sources is not None else DEFAULT_SOURCES).items()}
        if isinstance(quotas, str) and quotas != "learn":
            raise ValidationError(f'quotas must be a mapping or "learn", got {quotas!r}', field="quotas")
        self.quotas: dict[str, float] | str = (
            quotas if isinstance(quotas, str) else dict(quotas if quotas is not None else DEFAULT_QUOTAS)
        )
        self.total = total
        self.overfetch = overfetch
        self.warm_threshold = warm_threshold
        self.cold_quotas = dict(cold_quotas if cold_quotas is not None else COLD_QUOTAS)
        self.warming_boost = dict(warming_boost if warming_boost is not None else WARMING_BOOST)
        self.budget_ms = budget_ms
        self.learn = dict(learn or {})
        if merge_by not in ("quota", "fusion"):
            raise ValidationError(f'merge_by must be "quota" or "fusion", got {merge_by!r}', field="merge_by")
        self.merge_by = merge_by
        self.deadline_ms = deadline_ms
        self.last_errors_: dict[str, str] = {}
        self.late_counts_: dict[str, int] = {}
        self.last_counts_: dict[str, int] = {}
        self.last_seconds_: dict[str, float] = {}

    def get_params(self) -> dict[str, Any]:
        """The constructor arguments (what :meth:`save` writes)."""
        keys = ("sources", "quotas", "total", "overfetch", "warm_threshold", "cold_quotas", "warming_boost")
        keys += ("budget_ms", "learn", "merge_by", "deadline_ms")
        return {k: getattr(self, k) for k in keys}

    def fit(self, data: RetrievalData) -> Self:
        """Build and fit every configured source on ``data`` (learning the quotas first if asked)."""
        if self.quotas == "learn":
            budgets = [max(1, self.total // 4), max(1, self.total // 2)]
            kwargs = {"min_history": self.warm_threshold, "budgets": budgets, **self.learn}
            kwargs |= {"merge_by": self.merge_by, "overfetch": self.overfetch}
            self.learned_quotas_ = learn_quotas(self._fit_sources, data, self.total, **kwargs)
        self.sources_ = self._fit_sources(data)
        return self

    def _fit_sources(self, data: RetrievalData) -> dict[str, Any]:
        out = {}
        for name, params in self.sources.items():
            with step(f"fit {name}"):
                out[name] = make_source(name, **params).fit(data)
        return out

    @property
    def overfetch_(self) -> float:
        """The overfetch used: ``overfetch``, or more when learned quotas overlap (their sum × 1.1)."""
        if self.merge_by == "fusion":
            return self.overfetch
        sums = [sum(w.values()) for g in getattr(self, "learned_quotas_", {}).values() for w in g.values()]
        return max([self.overfetch, *(1.1 * x for x in sums)])

    def warm_quotas(self, group: str = "warm", total: int | None = None) -> dict[str, float] | None:
        """The ``warm`` (or ``warming``) users' weights: configured or learned (None: not learned).

        Learned weights are those learned for the candidate count nearest ``total`` (log scale);
        too few warm validation users: :data:`DEFAULT_QUOTAS`.
        """
        if isinstance(self.quotas, str):
            self._check()
            learned = self.learned_quotas_.get(group)
            if not learned:
                return dict(DEFAULT_QUOTAS) if group == "warm" else None
            total = self.total if total is None else total
            return learned[min(learned, key=lambda b: abs(math.log(b / total)))]
        return dict(self.quotas) if group == "warm" else None

    def _check(self) -> None:
        if not hasattr(self, "sources_"):
            raise NotTrainedError("Retriever is not fitted; call fit() first")

    def user_quotas(self, query: RetrievalQuery, total: int | None = None) -> list[dict[str, float]]:
        """Each user's quota (candidate count) per source, from the cold-start policy."""
        self._check()
        total = self.total if total is None else total
        n_hist = np.diff(query.histories.tocsr().indptr)
        names = list(self.sources_)
        warm, warming = self.warm_quotas("warm", total), self.warm_quotas("warming", total)
        out = []
        for u in range(len(query)):
            n_recent = len(query.recent[u]) if u < len(query.recent) else 0
            if n_hist[u] == 0 and n_recent == 0:
                w = {s: self.cold_quotas.get(s, 0.0) for s in names}
            elif warming is not None and n_hist[u] < self.warm_threshold:
                w = {s: warming.get(s, 0.0) for s in names}
            else:
                boost = self.warming_boost if n_hist[u] < self.warm_threshold else {}
                w = {s: (warm or {}).get(s, 0.1) * boost.get(s, 1.0) for s in names}
            mass = sum(w.values())
            out.append({s: total * v / mass if mass > 0 else 0.0 for s, v in w.items()})
        return out

    def fetch_count(self, quota: float, total: int) -> int:
        """Candidates to ask a source with ``quota`` (its largest in the batch) for, for ``total``."""
        if quota <= 0:
            return 0
        if self.merge_by == "fusion":
            return math.ceil(self.overfetch * total)
        return min(total, math.ceil(self.overfetch_ * quota))

    def combine(
        self, per_source: dict[str, list[Candidates]], quotas: list[dict[str, float]], total: int
    ) -> list[MergedCandidates]:
        """One list per user from the sources' lists: ``merge`` or ``fuse`` as ``merge_by`` says."""
        return (fuse if self.merge_by == "fusion" else merge)(per_source, quotas, total)

    def retrieve_sources(
        self, query: RetrievalQuery, quotas: list[dict[str, float]], total: int
    ) -> dict[str, list[Candidates]]:
        """Each source's lists for ``query``, asked for its overfetched quota (failures: empty)."""
        if self.deadline_ms is not None:
            return self._retrieve_concurrently(query, quotas, total, self.deadline_ms)
        out: dict[str, list[Candidates]] = {}
        self.last_errors_, self.last_seconds_ = {}, {}
        start = time.perf_counter()
        for name, source in self.sources_.items():
            k = self.fetch_count(max((q[name] for q in quotas), default=0.0), total)
            t = time.perf_counter()
            if k > 0 and self.budget_ms is not None and (t - start) * 1000 >= self.budget_ms:
                self.last_errors_[name] = f"skipped: the {self.budget_ms} ms budget was spent"
                out[name] = [Candidates.empty()] * len(query)
                continue
            asked = query if grows_catalogue(source) else query.narrowed(self.fitted_items_)
            try:
                out[name] = source.retrieve(asked, k) if k > 0 else [Candidates.empty()] * len(query)
            except Exception as exc:  # a failing source must not fail the request
                self.last_errors_[name] = f"{type(exc).__name__}: {exc}"
                out[name] = [Candidates.empty()] * len(query)
            self.last_seconds_[name] = time.perf_counter() - t
        return out

    def _retrieve_concurrently(
        self, query: RetrievalQuery, quotas: list[dict[str, float]], total: int, deadline_ms: float
    ) -> dict[str, list[Candidates]]:
        """Every source at once in threads; the ones late for ``deadline_ms`` are dropped (counted)."""
        empty = [Candidates.empty()] * len(query)
        calls = {}
        for name, source in self.sources_.items():
            k = self.fetch_count(max((q[name] for q in quotas), default=0.0), total)
            if k > 0:
                asked = query if grows_catalogue(source) else query.narrowed(self.fitted_items_)
                calls[name] = functools.partial(source.retrieve, asked, k)
        start = time.perf_counter()
        inline = [n for n in calls if declares(s := self.sources_[n], AskedInline) and s.asked_inline]
        got, late, errors = ask_all(calls, deadline_ms, inline)
        self.last_seconds_ = {"sources": time.perf_counter() - start}
        self.last_errors_ = dict(errors)
        for name in late:
            self.last_errors_[name] = f"late: dropped at the {deadline_ms:g} ms deadline"
            self.late_counts_[name] = self.late_counts_.get(name, 0) + 1
        return {name: got.get(name, empty) for name in self.sources_}

    @property
    def fitted_items_(self) -> int:
        """Items the sources were fitted on (sources without ``add_items`` know no more)."""
        return getattr(self, "_fitted_items", 1 << 62)

    def add_items(self, items: pa.Table, indices: np.ndarray, n_before: int) -> list[str]:
        """Index new or updated catalogue rows in every source that can (:class:`GrowsCatalogue`).

        ``n_before``: the catalogue size before the first addition (what the other sources know).
        Returns the names of the sources that took them.
        """
        self._check()
        if not hasattr(self, "_fitted_items"):
            self._fitted_items = int(n_before)
        took = []
        for name, source in self.sources_.items():
            if isinstance(source, GrowsCatalogue):
                source.add_items(items, indices)
                took.append(name)
        return took

    def retrieve(
        self, query: RetrievalQuery, total: int | None = None, inspect: Inspect | None = None
    ) -> list[MergedCandidates]:
        """Merged candidates of every user of ``query`` (``total`` per user at most).

        ``inspect(per_source, errors)``, when given, sees each source's lists and errors before
        the merge (a request trace).
        """
        total = self.total if total is None else total
        quotas = self.user_quotas(query, total)
        per_source = self.retrieve_sources(query, quotas, total)
        self.last_counts_ = {name: sum(len(c) for c in lists) for name, lists in per_source.items()}
        if inspect is not None:
            inspect(per_source, self.last_errors_)
        t = time.perf_counter()
        merged = self.combine(per_source, quotas, total)
        self.last_seconds_["merge"] = time.perf_counter() - t
        return merged

    def save(self, folder: str | Path) -> None:
        """Write the configuration and every fitted source (``sources/<name>/``) to ``folder``."""
        self._check()
        folder = Path(folder)
        for name, source in self.sources_.items():
            source.save(folder / "sources" / name)
        meta: dict[str, Any] = {"fitted": list(self.sources_)}
        if hasattr(self, "learned_quotas_"):
            meta["learned_quotas"] = {
                g: {str(b): w for b, w in by.items()} for g, by in self.learned_quotas_.items()
            }
        save_artifact(folder, KIND, FORMAT_VERSION, self.get_params(), {}, meta)

    @classmethod
    def load(cls, folder: str | Path) -> Self:
        """Read a retriever written by :meth:`save` (each source through ``load_source``)."""
        art = load_artifact(folder, KIND, FORMAT_VERSION)
        retriever = cls(**art.params)
        retriever.sources_ = {
            name: load_source(Path(folder) / "sources" / name) for name in art.meta["fitted"]
        }
        if "learned_quotas" in art.meta:
            learned = art.meta["learned_quotas"]
            retriever.learned_quotas_ = {
                g: {int(b): {k: float(v) for k, v in w.items()} for b, w in by.items()}
                for g, by in learned.items()
            }
        return retriever
