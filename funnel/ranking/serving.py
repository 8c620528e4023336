"""``RankingServer``: the full request path of one trained version — retrieve, rank, re-rank.

Built from a bundle folder (:meth:`RankingServer.load`): the fitted
:class:`~funnel.ranking.model.RankingPipeline`, the catalogue and users tables in index order, and
the features lake of the training events, which is materialised into an in-process online store
(the embedded default; the same :class:`~funnel.features.serving.FeatureServer` reads Redis at
scale). Fresh events (:meth:`observe`) update that store through the streaming featurizer, so the
next request sees them in its features and recent items.

A request for ``user_ids`` (:meth:`recommend`): recent items (newest first) from the store,
segments from the users table, retrieval and ranking as of the *data clock* (one past the latest
event seen — wall-clock time for a live stream, the end of the data for a historical one, so
windowed features mean the same at training and serving), then the
:class:`~funnel.rerank.reranker.ReRanker` (policy filters, diversity, exploration, explanations).

Served-feature logging: with a :class:`~funnel.features.serving.ServedFeatureLog` (``served_log``,
what :class:`~funnel.engine.Engine` gives it: ``<data_dir>/served_features/``, 1% of requests by
default), a request whose id is sampled has every candidate row it scores logged (user, items,
the data clock ``t`` and the store's feature values), for the training–serving skew monitor
(:mod:`funnel.monitoring.skew`). Requests without an id (batch scoring, the promotion gate's
evaluation) are never logged.

Example: see :class:`funnel.engine.Engine`, which trains and serves it.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from funnel.core.schema import Interaction
from funnel.events.protocol import LogRecord
from funnel.experiments.overrides import ArmOverrides
from funnel.features.materialize import materialize
from funnel.features.offline import OfflineStore, write_partitioned
from funnel.features.online.memory import MemoryOnlineStore
from funnel.features.online.protocol import feature_key
from funnel.features.serving import FeatureServer, ServedFeatureLog
from funnel.features.streaming import Catalog, EventFeaturizer, event_id, read_recent
from funnel.ranking.features import Context, ItemStatics
from funnel.ranking.model import RankingPipeline
from funnel.ranking.trace import RequestTrace
from funnel.rerank.config import RerankConfig
from funnel.rerank.context import Page, PageRequest, Slate, UserContext
from funnel.rerank.explanations import POPULAR, Reason
from funnel.rerank.items import ItemPolicyTable
from funnel.rerank.reranker import ReRanker
from funnel.retrieval.quotas import SEGMENT_FIELDS
from funnel.retrieval.source import RetrievalQuery
from funnel.retrieval.sources.common import user_attributes

log = logging.getLogger(__name__)
FEATURES_DIR, ITEMS_FILE, USERS_FILE = "features", "catalogue.parquet", "users.parquet"


def save_serving_data(folder: str | Path, events: pa.Table, items: pa.Table, users: pa.Table) -> None:
    """Write what :meth:`RankingServer.load` needs beside the pipeline: events lake, tables."""
    import pyarrow.parquet as pq

    folder = Path(folder)
    write_partitioned(folder / FEATURES_DIR, "interactions", events, "train")
    pq.write_table(items, folder / ITEMS_FILE)
    pq.write_table(users, folder / USERS_FILE)


class RankingServer:
    """Serves one trained pipeline; see the module docstring."""

    def __init__(
        self,
        pipeline: RankingPipeline,
        items: pa.Table,
        users: pa.Table,
        store: MemoryOnlineStore,
        now_ms: int,
        rerank: RerankConfig | None = None,
        seed: int = 0,
        served_log: ServedFeatureLog | None = None,
    ) -> None:
        self.pipeline, self.store, self.now_ms, self.seed = pipeline, store, int(now_ms), seed
        self.items = items
        self.served_log = served_log
        self.catalog = Catalog.from_items(items)
        self.features = FeatureServer(store, self.catalog, served_log=served_log)
        statics = pipeline.statics_  # reads by item index (RankingPipeline.rank)
        self.features.bind_items(statics.item_ids, statics.positions)
        self.featurizer = EventFeaturizer(self.catalog)
        self.reranker = ReRanker(rerank, ItemPolicyTable.from_catalogue(items))
        self.user_index = {u: i for i, u in enumerate(users.column("user_id").to_pylist())}
        self.attrs = user_attributes(users, SEGMENT_FIELDS)
        self._popular = np.argsort(-pipeline.statics_.popularity, kind="stable")
        self._arm_rerankers: dict[str, tuple[ReRanker, ReRanker]] = {}

    @classmethod
    def load(
        cls,
        folder: str | Path,
        now_ms: int,
        rerank: RerankConfig | None = None,
        served_log: ServedFeatureLog | None = None,
    ) -> RankingServer:
        """The server of a bundle folder (pipeline in ``ranking/``, data beside it)."""
        import pyarrow.parquet as pq

        folder = Path(folder)
        pipeline = RankingPipeline.load(folder / "ranking")
        items, users = pq.read_table(folder / ITEMS_FILE), pq.read_table(folder / USERS_FILE)
        store = MemoryOnlineStore()
        materialize(OfflineStore(folder / FEATURES_DIR, items), store, now=now_ms, progress=False)
        return cls(pipeline, items, users, store, now_ms, rerank, served_log=served_log)

    def add_items(self, items: pa.Table, indices: np.ndarray) -> list[str]:
        """Serve the new catalogue rows ``items`` (``ITEMS`` columns) as item ``indices`` (appended).

        The sources that can (content, two-tower, new items) index them at once; feature, policy
        and statics tables grow with them (existing items keep their popularity percentiles, so
        their features do not move). Returns the sources that took them.
        """
        indices = np.asarray(indices, np.int64)
        st = self.pipeline.statics_
        n_before = len(st.item_ids)
        if (
            len(indices) == 0
            or indices.min() != n_before
            or not np.array_equal(indices, np.arange(n_before, n_before + len(indices)))
        ):
            raise ValueError(f"new items must take indices {n_before}.., got {indices[:3].tolist()}")
        rows = items.select(self.items.column_names).cast(self.items.schema)
        self.items = pa.concat_tables([self.items, rows]).combine_chunks()
        pub = rows.column("published_at").cast(pa.int64()).to_numpy(zero_copy_only=False)
        grown = ItemStatics(
            st.item_ids + rows.column("item_id").to_pylist(),
            np.concatenate([st.popularity, np.zeros(len(indices))]),
            np.concatenate([st.published_at, np.asarray(pub, dtype=np.float64)]),
        )
        grown.percentile[:n_before] = st.percentile
        grown.percentile[n_before:] = 0.0
        self.pipeline.statics_ = grown
        took = self.pipeline.retriever_.add_items(rows, indices, n_before)
        self.catalog = Catalog.from_items(self.items)
        self.features = FeatureServer(self.store, self.catalog, served_log=self.served_log)
        self.features.bind_items(grown.item_ids, grown.positions)
        self.featurizer = EventFeaturizer(self.catalog)
        table = ItemPolicyTable.from_catalogue(self.items)
        self.reranker = ReRanker(self.reranker.config, table, self.reranker.steps)
        # the data clock moves with events only: an item published after the last one would be "in
        # the future" (the new-items source skips it) until more traffic came. Its publication is
        # observed like an event, up to the wall clock (a scheduled release stays hidden until due).
        published = np.asarray(pub, dtype=np.float64)
        published = published[np.isfinite(published)]
        if len(published):
            self.now_ms = max(self.now_ms, min(int(published.max()), int(time.time() * 1000)))
        return took

    def observe(self, records: Sequence[LogRecord]) -> None:
        """Apply fresh event-log interactions to the online features and the clock.

        Idempotent per event: its ``event_id``, else its log offset (the streaming consumer's ids).
        """
        fresh = [r for r in records if isinstance(r.event, Interaction)]
        if not fresh:
            return
        batch = [(event_id(r, "events"), self.featurizer.increments(r.event)) for r in fresh]
        self.store.apply(batch, dedup_ttl_s=7 * 86_400)
        self.now_ms = max(self.now_ms, max(r.event.timestamp for r in fresh) + 1)

    def _recent(self, user_ids: Sequence[str]) -> list[np.ndarray]:
        hashes = self.store.get_many([feature_key("user", u, "recent") for u in user_ids])
        out = []
        for h in hashes:
            latest = sorted(read_recent(h).items(), key=lambda kv: -kv[1])
            idx = self.pipeline.statics_.index_of([item for item, _ in latest])
            out.append(idx[idx >= 0])
        return out

    def user_segments(self, user_id: str, overrides: Mapping[str, str] | None = None) -> dict[str, str]:
        """The segments the policy filters see for ``user_id``: stored attributes, ``overrides`` on top."""
        return {**self._segments([user_id])[0], **(overrides or {})}

    def _segments(self, user_ids: Sequence[str]) -> list[dict[str, str]]:
        rows = [self.user_index.get(u, -1) for u in user_ids]
        return [
            {f: str(self.attrs[f][r]) for f in SEGMENT_FIELDS if r >= 0 and self.attrs[f][r]} for r in rows
        ]

    def recommend(
        self,
        user_ids: Sequence[str],
        histories: sp.csr_matrix,
        k: int,
        segments: Mapping[str, str] | None = None,
        context: Context | None = None,
        trace: RequestTrace | None = None,
        overrides: ArmOverrides | None = None,
        request_ids: Sequence[str] | None = None,
    ) -> list[Page]:
        """A re-ranked page of ``k`` items per user (``histories``: their current positive items).

        ``overrides`` (an experiment arm's: :mod:`funnel.experiments.overrides`) replace the
        ranker's head weights and re-ranking settings for these users.
        ``segments`` (e.g. the request's ``country``) override the users' stored attributes;
        ``context`` (device, surface) feeds the ranker's context features. A page the policy
        leaves short is topped up from the most popular items, re-ranked with the same filters
        (so padding never breaks a hard policy); it can still be short when too few items are
        eligible at all. Should ranking fail (features unreadable, a broken model), the pages keep
        the retrieval order and say ``fallback="retrieval_order"``. ``trace`` records the first
        user's path (:mod:`funnel.ranking.trace`). ``request_ids`` (one per user): a sampled one has
        the feature rows scored for its user written to the served-feature log (module docstring).
        """
        user_ids = list(user_ids)
        if request_ids is not None and len(request_ids) != len(user_ids):
            raise ValueError(f"{len(request_ids)} request ids for {len(user_ids)} users")
        H = histories.tocsr()
        segments = [{**s, **(segments or {})} for s in self._segments(user_ids)]
        query = RetrievalQuery(user_ids, H, self._recent(user_ids), segments, self.now_ms)
        pages = []
        fallback = None
        reranker = self._reranker(overrides)
        weights = overrides.weights(self.pipeline.ranker_.weights) if overrides is not None else None
        try:
            contexts = [context] * len(user_ids) if context else None
            ranked = self.pipeline.rank(
                query, self.features, contexts, trace=trace, weights=weights, request_ids=request_ids
            )
        except Exception as exc:  # the retrieval order is the ranker's fallback
            log.exception("ranking failed; serving the retrieval order")
            fallback = "retrieval_order"
            if trace is not None:
                trace.fell_back(fallback, exc)
            ranked = [(m, -np.arange(len(m), dtype=np.float64)) for m in self.pipeline.retrieve(query, trace)]
            if trace is not None and ranked:
                trace.record_ranking(ranked[0][0].items, ranked[0][1], source=ranked[0][0].source_names())
        for r, (merged, scores) in enumerate(ranked):
            seen = H.indices[H.indptr[r] : H.indptr[r + 1]].astype(np.int64)
            user = UserContext(
                seen=seen,
                age_bucket=segments[r].get("age_bucket"),
                country=segments[r].get("country"),
                cold=len(seen) == 0,
            )
            rng = np.random.default_rng(zlib.crc32(f"{self.seed}:{user_ids[r]}:{self.now_ms}".encode()))
            slate = Slate.from_merged(merged, scores)
            main = page = reranker.rerank(slate, user, PageRequest(k=k, now_ms=self.now_ms), rng)
            if len(page) < k:
                page = self._top_up(page, user, k, rng, reranker)
            if trace is not None and r == 0:
                trace.record_rerank(main, page)
            page.fallback = fallback
            pages.append(page)
        return pages

    def _reranker(self, overrides: ArmOverrides | None) -> ReRanker:
        """The re-ranker with an arm's settings (built once per arm and item table)."""
        if overrides is None or not overrides.rerank:
            return self.reranker
        base, variant = self._arm_rerankers.get(overrides.rerank_key, (None, None))
        if base is not self.reranker or variant is None:  # new arm, or the item table grew
            variant = ReRanker(overrides.rerank_config(self.reranker.config), self.reranker.table)
            self._arm_rerankers[overrides.rerank_key] = (self.reranker, variant)
        return variant

    def _top_up(
        self, page: Page, user: UserContext, k: int, rng: np.random.Generator, reranker: ReRanker
    ) -> Page:
        """``page`` followed by the most popular eligible items it lacks (same filters)."""
        pool = self._popular[: 4 * k + len(user.seen) + len(page)]
        pool = pool[~np.isin(pool, page.items)]
        req = PageRequest(k=k - len(page), shown=page.items.astype(np.int64), now_ms=self.now_ms)
        pad = reranker.rerank(Slate(pool, -np.arange(len(pool), dtype=np.float64)), user, req, rng)
        return Page(
            np.concatenate([page.items, pad.items]),
            np.concatenate([page.scores, np.full(len(pad), -np.inf)]),
            page.reasons + [Reason("Popular now", POPULAR)] * len(pad),
            np.concatenate([page.propensity, pad.propensity]),
            np.concatenate([page.explored, pad.explored]),
            np.concatenate([page.sponsored, pad.sponsored]),
            page.trace + pad.trace,
        )
