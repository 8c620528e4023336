"""The serving pipeline of the walking skeleton: user history → model → fallbacks → explanations.

A :class:`Pipeline` serves one trained :class:`~funnel.training.bundle.Bundle`. A user's history
is the training matrix row plus every positive interaction observed since training (fed by
:meth:`Pipeline.observe` from the event log), so a new interaction changes the next
recommendation without retraining (the models fold the history in). Users without any history get
the popularity fallback. Unlisted items and seen items are never returned.

Later stages (multi-source retrieval, ranking, re-ranking) slot in here behind the same
``recommend`` call.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from funnel.core.interactions import Interactions
from funnel.events.protocol import LogRecord
from funnel.events.tables import interactions_table
from funnel.experiments.overrides import ArmOverrides
from funnel.features.serving import ServedFeatureLog
from funnel.ranking.features import Context
from funnel.ranking.serving import RankingServer
from funnel.ranking.trace import RequestTrace
from funnel.rerank.explanations import (
    BECAUSE_YOU_WATCHED,
    PICKED_FOR_YOU,
    POPULAR,
    SIMILAR_TO,
    ItemAnchors,
    Reason,
)
from funnel.training.bundle import Bundle

log = logging.getLogger(__name__)


@dataclass
class RankedList:
    """Recommendations for one user: item indices, scores and one reason per item.

    ``propensity``: per item, the probability the policy placed it where it is (exploration
    slots below 1; ``None`` for deterministic lists), to be logged with the impression.
    """

    items: np.ndarray
    scores: np.ndarray
    reasons: list[Reason]
    fallback: str | None = None
    propensity: np.ndarray | None = None


class Pipeline:
    """Serves one bundle; see the module docstring."""

    def __init__(
        self, bundle: Bundle, folder: str | Path | None = None, served_log: ServedFeatureLog | None = None
    ) -> None:
        """Serve ``bundle`` (its ranking pipeline from ``folder``, when there is one).

        ``served_log``: where the ranking server logs a sample of the feature rows it scores.
        """
        self.bundle = bundle
        self.ranking: RankingServer | None = None
        if folder is not None and (Path(folder) / "ranking").exists():
            now = int(bundle.meta.get("time_max_ms", 0)) + 1
            self.ranking = RankingServer.load(folder, now, served_log=served_log)
        self.n_items = bundle.history.shape[1]
        self.n_trained_items = self.n_items
        """The baseline model's catalogue: items added later (:meth:`add_items`) lie beyond it."""
        self.read_offset = bundle.log_offset
        """The event-log offset folded in so far (:meth:`funnel.engine.Engine.catch_up` moves it)."""
        self._anchors = ItemAnchors(bundle.history)
        self._fresh: dict[str, set[int]] = defaultdict(set)
        unlisted = np.flatnonzero(~bundle.listed[: self.n_items])
        self._unlisted_row = sp.csr_matrix(
            (np.ones(len(unlisted), dtype=np.float32), (np.zeros(len(unlisted), dtype=np.int64), unlisted)),
            shape=(1, self.n_items),
        )
        pop = bundle.popularity.astype(np.float64).copy()
        pop[~bundle.listed[: self.n_items]] = -np.inf
        self._popular = np.argsort(-pop, kind="stable")
        self._popular = self._popular[np.isfinite(pop[self._popular])]

    def observe(self, records: Sequence[LogRecord]) -> None:
        """Add event-log interactions that happened after training (positive ones extend the history)."""
        table = interactions_table(records)
        if not table.num_rows:
            return
        if self.ranking is not None:
            self.ranking.observe(records)
        inter = Interactions.from_table(table.select(["user_id", "item_id", "type"]))
        pos = inter.positive_mask()
        item_idx = self.bundle.items.lookup(inter.items.keys_of(inter.item_idx[pos]))
        user_ids = inter.users.keys_of(inter.user_idx[pos])
        for user, item in zip(user_ids, item_idx.tolist(), strict=True):
            if 0 <= item < self.n_items:
                self._fresh[user].add(item)

    def add_items(self, items: pa.Table) -> np.ndarray:
        """Serve catalogue rows ``items`` (``ITEMS`` columns) whose ids are new; returns their indices.

        Ids already in the catalogue are skipped (their updates wait for the next training). The
        baseline model still knows only its training catalogue; the ranking pipeline's content,
        two-tower and new-item sources index the new items at once, so they are retrievable
        before any retraining. Listed rows become recommendable; unlisted ones are kept out.
        """
        ids = items.column("item_id").to_pylist()
        fresh = [i for i, key in enumerate(ids) if self.bundle.items.get(key) < 0]
        if not fresh:
            return np.zeros(0, np.int64)
        rows = items.take(pa.array(fresh))
        b = self.bundle
        if len(b.items) != self.n_items:
            raise ValueError(f"the bundle maps {len(b.items)} item ids for {self.n_items} columns")
        indices = b.items.add_many(rows.column("item_id"))
        listed = pc.fill_null(pc.not_equal(rows.column("status"), "unlisted"), True)
        n, listed_new = self.n_items, listed.to_numpy(zero_copy_only=False).astype(bool)
        b.listed = np.concatenate([b.listed[:n], listed_new])
        b.popularity = np.concatenate([b.popularity[:n], np.zeros(len(fresh), b.popularity.dtype)])
        titles = rows.column("title").combine_chunks().cast(pa.string())
        b.titles = pa.concat_arrays([b.titles.cast(pa.string()), titles])
        self.n_items += len(fresh)
        b.history = sp.csr_matrix(
            (b.history.data, b.history.indices, b.history.indptr), shape=(b.history.shape[0], self.n_items)
        )
        if self.ranking is not None:
            self.ranking.add_items(rows, indices)
        return indices

    def set_listed(self, item_ids: Sequence[str], listed: bool) -> None:
        """Mark known ``item_ids`` listed or unlisted (a ``DELETE`` or a relisting since training).

        The ranked pages obey it at once; the ANN indexes drop unlisted items at the next training.
        """
        idx = self.bundle.items.lookup(list(item_ids)) if len(item_ids) else np.zeros(0, np.int64)
        idx = idx[(idx >= 0) & (idx < self.n_items)]
        self.bundle.listed[idx] = listed

    def history_rows(self, user_ids: list[str]) -> sp.csr_matrix:
        """Binary history rows (training + fresh) for ``user_ids``; unknown users give empty rows."""
        idx = self.bundle.users.lookup(user_ids)
        H = self.bundle.history
        known = (idx >= 0) & (idx < H.shape[0])
        rows: list[np.ndarray] = []
        for r, user in enumerate(user_ids):  # CSR built directly: a request has one or a few users
            parts = []
            if known[r]:
                s, e = H.indptr[idx[r]], H.indptr[idx[r] + 1]
                parts.append(H.indices[s:e][H.data[s:e] != 0])  # stored zeros are no history
            fresh = self._fresh.get(user)
            if fresh:
                parts.append(np.fromiter(fresh, np.int64, len(fresh)))
            rows.append(np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64))
        indptr = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum([len(r) for r in rows], out=indptr[1:])
        indices = np.concatenate(rows).astype(H.indices.dtype) if rows else np.zeros(0, H.indices.dtype)
        data = np.ones(len(indices), dtype=np.result_type(H.dtype, np.float32))
        return sp.csr_matrix((data, indices, indptr), shape=(len(user_ids), self.n_items))

    def recommend(
        self,
        user_ids: list[str],
        k: int,
        segments: dict[str, str] | None = None,
        context: Context | None = None,
        trace: RequestTrace | None = None,
        overrides: ArmOverrides | None = None,
        request_ids: Sequence[str] | None = None,
    ) -> list[RankedList]:
        """Top-``k`` for each user, seen and unlisted items excluded, with reasons.

        ``overrides``: an experiment arm's settings, applied by the ranking pipeline (the
        baseline has none to change).
        With a ranking pipeline in the bundle: retrieval, ranking and re-ranking (policy filters
        use ``segments``, e.g. the request's ``country``, over the users' attributes); should it
        fail, the baseline serves and each list says ``fallback="baseline"``. ``trace`` (one
        user) records what each stage did (:mod:`funnel.ranking.trace`). ``request_ids`` (one per
        user, e.g. the HTTP request's id): the ranking server's served-feature log samples by them.
        """
        if trace is not None:
            if len(user_ids) != 1:
                raise ValueError(f"a trace follows one user, got {len(user_ids)}")
            trace.mark()
        rows = self.history_rows(user_ids)
        if self.ranking is not None:
            try:
                return self._ranked(
                    user_ids, rows, k, segments, context, trace, overrides=overrides, request_ids=request_ids
                )
            except Exception as exc:  # the baseline is the fallback of the full pipeline
                log.exception("ranking pipeline failed; serving the baseline")
                if trace is not None:
                    trace.fell_back("baseline", exc)
                return [
                    RankedList(r.items, r.scores, r.reasons, "baseline")
                    for r in self._baseline(user_ids, rows, k, trace)
                ]
        if trace is not None:
            trace.fell_back("baseline", "the bundle has no ranking pipeline")
        return self._baseline(user_ids, rows, k, trace)

    def _ranked(
        self,
        user_ids: list[str],
        rows: sp.csr_matrix,
        k: int,
        segments: dict[str, str] | None,
        context: Context | None = None,
        trace: RequestTrace | None = None,
        overrides: ArmOverrides | None = None,
        request_ids: Sequence[str] | None = None,
    ) -> list[RankedList]:
        assert self.ranking is not None
        out = []
        pages = self.ranking.recommend(
            user_ids, rows, k, segments, context, trace, overrides=overrides, request_ids=request_ids
        )
        for page in pages:
            listed = self.bundle.listed[page.items]
            if trace is not None and not listed.all():
                trace.step("listed").remove(page.items[~listed], "unlisted")
            reasons = [x for x, ok in zip(page.reasons, listed.tolist(), strict=True) if ok]
            scores = page.scores[listed].astype(np.float32)
            propensity = page.propensity[listed]
            out.append(RankedList(page.items[listed], scores, reasons, page.fallback, propensity))
        return out

    def _baseline(
        self, user_ids: list[str], rows: sp.csr_matrix, k: int, trace: RequestTrace | None = None
    ) -> list[RankedList]:
        rows = rows[:, : self._unlisted_row.shape[1]]  # the model knows its training catalogue only
        exclude = rows + sp.csr_matrix(np.ones((len(user_ids), 1), dtype=np.float32)) @ self._unlisted_row
        items, scores = self.bundle.model.recommend(rows, k, exclude=sp.csr_matrix(exclude))
        out = []
        for r in range(len(user_ids)):
            history = rows.indices[rows.indptr[r] : rows.indptr[r + 1]]
            if len(history) == 0:
                out.append(self._popular_list(history, k, fallback="cold_user"))
                continue
            valid = items[r] >= 0
            ranked = RankedList(items[r][valid], scores[r][valid], [])
            if len(ranked.items) < k:
                ranked = self._pad_with_popular(ranked, history, k)
            ranked.reasons = self._reasons(history, ranked.items, ranked.reasons)
            out.append(ranked)
        if trace is not None:
            trace.record_ranking(out[0].items, out[0].scores)
            trace.lap("baseline")
        return out

    def similar(self, item_index: int, k: int) -> RankedList:
        """Items most similar to ``item_index`` (listed ones only)."""
        items, scores = self.bundle.model.similar_items(
            np.array([item_index]), k + len(self._unlisted_row.indices)
        )
        keep = (items[0] >= 0) & self.bundle.listed[np.maximum(items[0], 0)]
        items, scores = items[0][keep][:k], scores[0][keep][:k]
        reason = Reason(f"Similar to {self.bundle.title(item_index)}", SIMILAR_TO, item_index)
        return RankedList(items, scores, [reason] * len(items))

    def popular(self, n: int) -> np.ndarray:
        """The ``n`` most popular listed items (indices), most popular first."""
        return self._popular[:n]

    def _popular_list(self, seen: np.ndarray, k: int, fallback: str | None) -> RankedList:
        head = self._popular[: k + len(seen)]
        pool = head[~np.isin(head, seen)][:k]
        scores = self.bundle.popularity[pool].astype(np.float32)
        return RankedList(pool, scores, [Reason("Popular now", POPULAR)] * len(pool), fallback)

    def _pad_with_popular(self, ranked: RankedList, seen: np.ndarray, k: int) -> RankedList:
        taken = np.concatenate([seen, ranked.items])
        extra = self._popular_list(taken, k - len(ranked.items), None)
        return RankedList(
            np.concatenate([ranked.items, extra.items]),
            np.concatenate([ranked.scores, np.full(len(extra.items), -np.inf, dtype=np.float32)]),
            [None] * len(ranked.items) + extra.reasons,  # type: ignore[list-item]
        )

    def _reasons(self, history: np.ndarray, items: np.ndarray, given: list[Reason | None]) -> list[Reason]:
        anchors, _ = self._anchors.anchor(history, items)
        reasons = []
        for pos, anchor in enumerate(anchors.tolist()):
            if pos < len(given) and given[pos] is not None:
                reasons.append(given[pos])
            elif anchor >= 0:
                reasons.append(
                    Reason(f"Because you watched {self.bundle.title(anchor)}", BECAUSE_YOU_WATCHED, anchor)
                )
            else:
                reasons.append(Reason("Picked for you", PICKED_FOR_YOU))
        return reasons
