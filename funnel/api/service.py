"""``RecommendationService``: what the HTTP routes call — an :class:`~funnel.engine.Engine` made servable.

It adds what a request path needs beyond the engine's Python API:

* **Catch-up before every request.** Events logged since the last request (by any worker: the log
  is shared) are folded into the pipeline, and the entity feed's item and user changes applied,
  so an interaction shows in the user's very next page and an unlisted item is never returned
  once its DELETE has returned. When the log or the feed cannot be read, a
  :class:`~funnel.api.breaker.CircuitBreaker` stops asking for a while and requests are served
  from the state already held, marked ``fallback="stale_state"``.
* **Paging and filters.** ``cursor`` (the ids already served: :mod:`funnel.api.cursor`),
  ``exclude`` and ``category`` filter an over-fetched ranked list; a page short after filtering
  is topped up from the most popular eligible items.
* **Degradation.** A failing ranking stage serves the baseline (``fallback="baseline"``); a
  failing pipeline serves the most popular listed items (``fallback="popular"``).
* **Thread safety.** FastAPI runs the routes in a thread pool; one lock serialises the mutable
  pipeline state (catch-up, entity changes, ranking), event appends run outside it.
* **Hot swap.** A newly promoted version is loaded in the background and swapped in between two
  requests (:mod:`funnel.api.hot_swap`); every page names the version that ranked it.
* **Per-arm model versions.** An experiment arm naming ``model_version`` is served by that
  version's pipeline, held beside the live one and kept caught up like it
  (:mod:`funnel.api.arm_models`).

Example:
    >>> import tempfile, pyarrow as pa
    >>> from funnel.engine import Engine
    >>> eng = Engine(tempfile.mkdtemp())
    >>> _ = eng.import_interactions(pa.table({"user_id": ["u1", "u1", "u2"], "item_id": ["a", "b", "a"],
    ...                                      "timestamp": [1_700_000_000, 1_700_000_001, 1_700_000_002]}))
    >>> _ = eng.train(model="pop")
    >>> svc = RecommendationService(eng)
    >>> page = svc.recommend(RecommendationRequest("u2", limit=1))
    >>> [i.item_id for i in page.items], page.fallback
    (['b'], None)
    >>> svc.recommend(RecommendationRequest("u2", limit=1, cursor=page.next_cursor)).items
    []
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from funnel.api.arm_models import ArmModels
from funnel.api.breaker import CircuitBreaker
from funnel.api.catalogue_lookup import allowed_by_policy, current_item, items_by_category
from funnel.api.cursor import MAX_SERVED, decode_cursor, encode_cursor
from funnel.api.debug import filter_reasons, record_request
from funnel.api.entity_feed import EntityChange, EntityFeed, open_entity_feed
from funnel.api.experiments import KIND as EXPERIMENT
from funnel.api.experiments import ExperimentBook
from funnel.api.fair_lock import FairLock
from funnel.api.history import UserHistory
from funnel.api.hot_swap import HotSwapper
from funnel.api.metrics import ApiMetrics
from funnel.api.page import RecommendationPage, RecommendationRequest
from funnel.core.errors import FunnelError, NotFoundError, UnavailableError, ValidationError
from funnel.core.schema import Impression, Interaction, Item, User
from funnel.data.tables import to_canonical
from funnel.engine import Engine, Recommendation
from funnel.pipeline import Pipeline, RankedList
from funnel.ranking.features import Context
from funnel.ranking.trace import RequestTrace
from funnel.rerank.explanations import POPULAR, Reason

log = logging.getLogger(__name__)
MAX_FETCH = 1000
MODEL_VERSION_HEADER = "x-funnel-model-version"
"""Response header naming the model version that answered (recommendations, similar items)."""
_STAGE_FALLBACKS = ("popular", "baseline", "retrieval_order")
"""Fallbacks of a failed serving stage: reported even when the state is stale as well."""
# epoch ms typed as timestamps: an int column would be read with a guessed unit (below 1e11: seconds)
_USER_INPUT = pa.schema(
    [("user_id", pa.string()), ("created_at", pa.timestamp("ms", tz="UTC")), ("attributes", pa.string())]
)
_ITEM_INPUT = pa.schema(
    [
        ("item_id", pa.string()),
        ("title", pa.string()),
        ("description", pa.string()),
        ("categories", pa.list_(pa.string())),
        ("tags", pa.list_(pa.string())),
        ("creator_id", pa.string()),
        ("published_at", pa.timestamp("ms", tz="UTC")),
        ("status", pa.string()),
        ("attributes", pa.string()),
    ]
)


@dataclass(frozen=True)
class _ReadAhead:
    """What a request read of the stores before queueing for the lock (see ``catch_up``)."""

    end: int  # the event log's end offset
    started: float  # perf_counter() when the reads started
    feed_from: str  # the entity feed's position the changes were read after
    changes: list[EntityChange]
    feed_to: str  # the position after them


class RecommendationService:
    """The engine behind the API; see the module docstring."""

    def __init__(
        self,
        engine: Engine,
        feed: EntityFeed | None = None,
        metrics: ApiMetrics | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.engine = engine
        self.feed = feed or open_entity_feed("memory://")
        self.metrics = metrics or ApiMetrics()
        self.breaker = breaker or CircuitBreaker("event_log", failures=3, reset_s=2.0)
        self._lock = FairLock()  # requests queue for it: first come, first served
        # an in-process log (file://, memory://) serialises appends anyway: its end read under one lock
        # with the append makes the duplicate count exact (log_interactions); a redis:// log is shared
        # by processes, which a lock here cannot order, and it would queue writes behind a hung server
        shared = engine.event_log_url.startswith("redis")
        self._append_lock: AbstractContextManager[Any] = nullcontext() if shared else threading.Lock()
        self._feed_pos = ""
        self._unlisted: set[str] = set()
        self._relisted: set[str] = set()
        self._user_attrs: dict[str, dict[str, str]] = {}
        self._categories: dict[str, dict[str, np.ndarray]] = {}  # per model version
        self._version: str | None = None
        self._loaded = False  # a model is held: the engine never drops it again
        self.history = UserHistory(engine)
        self.experiments = ExperimentBook(engine.data_dir, self.feed)
        self._feed_items: dict[str, dict[str, Any]] = {}  # item rows from the feed since the last swap
        self.swapper = HotSwapper(engine, self._lock, self._prepare, self._finish, self._swapped)
        self.arm_models = ArmModels(engine, self.experiments, self._lock, self._prepare, self._finish)
        self.arm_models.sync()  # a worker started while an experiment runs loads its arms' versions

    # ---- state -----------------------------------------------------------------------------

    def _pipeline(self) -> Pipeline:
        pipeline = self.engine.pipeline(catch_up=False)
        if self._version != pipeline.bundle.version:
            self._version, self._categories = pipeline.bundle.version, {}
            self.metrics.model_info.clear()
            self.metrics.model_info.labels(version=self._version).set(1)
        return pipeline

    def _prepare(self, pipeline: Pipeline) -> None:
        """A version about to be swapped in (unlocked): serve the lake's items its training did not see."""
        items = self.engine.lake.read("items")
        if items.num_rows:
            unknown = pipeline.bundle.items.lookup(items.column("item_id")) < 0
            rows = items.filter(pa.array(unknown))
            latest = {key: i for i, key in enumerate(rows.column("item_id").to_pylist())}
            if latest:
                pipeline.add_items(rows.take(pa.array(list(latest.values()))))

    def _finish(self, pipeline: Pipeline) -> None:
        """Under the lock, before the swap: the items and listings the feed brought since."""
        if self._feed_items:
            self._add_items(list(self._feed_items.values()), pipeline)
        pipeline.set_listed(sorted(self._unlisted), False)
        pipeline.set_listed(sorted(self._relisted - self._unlisted), True)

    def _swapped(self, pipeline: Pipeline) -> None:
        self._feed_items.clear()
        self.metrics.model_swaps.inc()
        if self.swapper.last_load_s is not None:
            self.metrics.stages.labels(stage="model_load").observe(self.swapper.last_load_s)

    def catch_up(self) -> bool:
        """Fold new events and entity changes in; False when they could not be read (stale state).

        The reads that usually find nothing new (the log's end offset and the entity feed's
        changes, :meth:`_read_ahead`) run outside the lock, so a hung store holds up only the
        requests asking it (each for at most the client's socket timeout), not every request
        queued behind the lock, and a slow answer does not lengthen the lock's hold; the rest
        (:meth:`_fold_in`) runs under it. Any failure once the model is loaded counts against the
        breaker and serves the state held: every call the breaker let through reports back.
        """
        ahead = self._read_ahead()
        with self._lock:
            return self._fold_in(ahead)

    def _read_ahead(self) -> _ReadAhead | None:
        """The log's end offset and the feed's changes, read outside the lock; None when not read.

        None when the breaker holds the stores off or a read failed (counted against it). Until a
        model is held, the first call loads it under the lock (no model yet, ``NotTrainedError``,
        is not a store failure: it propagates).
        """
        if not self._loaded:
            with self._lock:
                self._pipeline()
            self._loaded = True
        self.swapper.check()  # a newly promoted version: loaded in the background
        if not self.breaker.allow():
            return None
        started = time.perf_counter()
        try:
            end = self.engine.event_log.end_offset  # every event acknowledged before now
            feed_from = self._feed_pos
            changes, feed_to = self.feed.read(feed_from)  # every change that returned before now
        except Exception as exc:
            self._catch_up_failed(exc)
            return None
        return _ReadAhead(end, started, feed_from, changes, feed_to)

    def _fold_in(self, ahead: _ReadAhead | None) -> bool:
        """Under the lock: events up to the read-ahead's end and the feed's changes folded in.

        The feed's changes read ahead are applied when no request has moved the feed's position
        since they were read; otherwise the feed is read again from where the state now is.
        """
        if ahead is None:
            return False
        try:
            start = self._pipeline().read_offset
            records = self.engine.catch_up(until=ahead.end)
            self.arm_models.catch_up(records, start, self._pipeline().read_offset)
            if self._feed_pos == ahead.feed_from:
                changes, self._feed_pos = ahead.changes, ahead.feed_to
            else:  # another request moved the position meanwhile: read on from where it is
                changes, self._feed_pos = self.feed.read(self._feed_pos)
            self._apply(changes)
        except Exception as exc:
            self._catch_up_failed(exc)
            return False
        self.breaker.success()
        self.metrics.breaker_open.labels(name=self.breaker.name).set(0)
        self.metrics.stages.labels(stage="catch_up").observe(time.perf_counter() - ahead.started)
        return True

    def _catch_up_failed(self, exc: Exception) -> None:
        self.breaker.failure()
        self.metrics.catch_up_failures.inc()
        self.metrics.breaker_open.labels(name=self.breaker.name).set(self.breaker.state != "closed")
        if isinstance(exc, UnavailableError):
            log.warning("serving the state held (breaker %s): %s", self.breaker.state, exc)
        else:
            log.exception("catch-up failed; serving the state held (breaker %s)", self.breaker.state)

    def _apply(self, changes: Sequence[EntityChange]) -> None:
        new_rows = [c.data["row"] for c in changes if c.kind == "item" and "row" in c.data]
        if new_rows:
            self._add_items(new_rows)
            self._feed_items.update((r["item_id"], r) for r in new_rows)
        pipelines = [self._pipeline(), *self.arm_models.loaded()]
        for change in changes:
            if change.kind == "unlist":
                self._unlisted.add(change.id)
                self._relisted.discard(change.id)
                for pipeline in pipelines:
                    pipeline.set_listed([change.id], False)
            elif change.kind == "item":
                self._categories = {}  # the item's categories may have changed
                listed = change.data.get("status", "listed") == "listed"
                if listed:
                    self._unlisted.discard(change.id)
                    self._relisted.add(change.id)
                else:
                    self._unlisted.add(change.id)
                for pipeline in pipelines:
                    pipeline.set_listed([change.id], listed)
            elif change.kind == "user":
                attrs = change.data.get("attributes") or {}
                self._user_attrs[change.id] = {str(k): str(v) for k, v in attrs.items()}
            elif change.kind == EXPERIMENT:
                self.experiments.apply(change.data)
                self.arm_models.sync()  # load (in the background) or drop the versions arms name

    def _add_items(self, rows: list[dict[str, Any]], pipeline: Pipeline | None = None) -> None:
        """Make new catalogue items retrievable now (content embedding, ANN index); see Pipeline.add_items.

        Without ``pipeline``: in the live pipeline and every experiment arm's.
        """
        latest = {r["item_id"]: r for r in rows}
        table = to_canonical("items", pa.Table.from_pylist(list(latest.values()), schema=_ITEM_INPUT))
        t = time.perf_counter()
        targets = [pipeline] if pipeline is not None else [self._pipeline(), *self.arm_models.loaded()]
        added = [len(p.add_items(table)) for p in targets]  # every target
        if any(added):
            self._categories = {}
            self.metrics.stages.labels(stage="add_items").observe(time.perf_counter() - t)

    def ready(self) -> dict[str, bool]:
        """Readiness per dependency: ``model`` loaded, ``event_log`` and ``entity_feed`` reachable."""
        out = {"model": self.engine.model_version is not None, "event_log": True, "entity_feed": True}
        try:
            _ = self.engine.event_log.end_offset
        except Exception:  # unreachable (UnavailableError) or failing in any other way: not ready
            out["event_log"] = False
        try:
            self.feed.read(self._feed_pos)
        except Exception:
            out["entity_feed"] = False
        return out

    # ---- reads -------------------------------------------------------------------------------

    def recommend(self, request: RecommendationRequest) -> RecommendationPage:
        """One page of recommendations; see the module docstring."""
        timings: dict[str, float] = {}
        trace = RequestTrace() if request.debug else None
        t0 = time.perf_counter()
        ahead = self._read_ahead()
        timings["catch_up"] = (time.perf_counter() - t0) * 1e3
        served = decode_cursor(request.cursor) if request.cursor else []
        excluded = set(served) | set(request.exclude)
        context = Context(device=request.device or "", surface=request.surface or "")
        with self._lock:  # one hold for the catch-up and the page: the lock is queued for once
            t0 = time.perf_counter()
            fresh = self._fold_in(ahead)
            t1 = time.perf_counter()
            timings["catch_up"] += (t1 - t0) * 1e3
            segments = {**self._user_attrs.get(request.user_id, {})}  # as the feed just left them
            if request.country is not None:
                segments["country"] = request.country
            assigned = self.experiments.assign(request.user_id)
            version = assigned.overrides.model_version if assigned is not None else None
            pinned = self.arm_models.pipeline_for(version, wait=False) if version is not None else None
            if version is not None and pinned is None:  # loading, maybe: its load needs the lock
                pinned = self._arm_pipeline_unlocked(version)
            if version is not None and pinned is None:
                log.warning("arm %s: version %s is not loaded, the live one serves", assigned.arm, version)
            pipeline = self._pipeline()
            pipeline = pinned if pinned is not None else pipeline
            fetch = min(MAX_FETCH, (request.limit + len(excluded)) * (4 if request.category else 1))
            try:
                overrides = assigned.overrides if assigned is not None else None
                rids = [request.request_id] if request.request_id else None
                args = ([request.user_id], fetch, segments or None, context, trace)
                ranked = pipeline.recommend(*args, overrides=overrides, request_ids=rids)[0]
            except Exception as exc:
                log.exception("pipeline failed; serving popular items")
                items = pipeline.popular(fetch)
                scores = pipeline.bundle.popularity[items].astype(np.float32)
                ranked = RankedList(items, scores, [Reason("Popular now", POPULAR)] * len(items), "popular")
                if trace is not None:
                    trace.fell_back("popular", exc)
                    trace.record_ranking(items, scores)
            recs = self._filter(pipeline, ranked, excluded, request, segments)
            kept = len(recs)
            if len(recs) < request.limit:
                taken = excluded | {r.item_id for r in recs}
                recs += self._top_up(pipeline, taken, request, len(recs), segments)
            self._count_sources(pipeline)
            if trace is not None:
                cat = None if request.category is None else self._category_items(pipeline, request.category)
                why = filter_reasons(served, request.exclude, self._unlisted, cat)
                page_ids = [r.item_id for r in recs]
                record_request(trace, pipeline.bundle.items, ranked.items, page_ids, kept, request.limit, why)
        timings["pipeline"] = (time.perf_counter() - t1) * 1e3
        recs = recs[: request.limit]
        # a stale state outranks the normal cold-start path (cold_user); a failed stage says more
        fallback = ranked.fallback if fresh or ranked.fallback in _STAGE_FALLBACKS else "stale_state"
        if fallback:
            self.metrics.fallbacks.labels(kind=fallback).inc()
        if trace is not None:
            trace.fallback = fallback
            trace.timings_ms.update(timings)
        self.metrics.stages.labels(stage="pipeline").observe(timings["pipeline"] / 1e3)
        now_served = served + [r.item_id for r in recs]
        more = len(recs) == request.limit and len(now_served) + request.limit <= MAX_SERVED
        cursor = encode_cursor(now_served) if more else None
        page = RecommendationPage(recs, cursor, pipeline.bundle.version, fallback, timings, trace)
        if assigned is not None:
            page.experiment, page.arm = assigned.experiment, assigned.arm
        return page

    def _arm_pipeline_unlocked(self, version: str) -> Pipeline | None:
        """The arm pipeline of ``version``, waited for with the serving lock (held once) released."""
        self._lock.release()
        try:
            return self.arm_models.pipeline_for(version)
        finally:
            self._lock.acquire()

    def _count_sources(self, pipeline: Pipeline) -> None:
        if pipeline.ranking is None:
            return
        retriever = pipeline.ranking.pipeline.retriever_
        for name, count in retriever.last_counts_.items():
            self.metrics.candidates.labels(source=name).inc(count)
        for name, error in retriever.last_errors_.items():
            if error.startswith("late"):
                self.metrics.late_sources.labels(source=name).inc()

    def _filter(
        self,
        pipeline: Pipeline,
        ranked: RankedList,
        excluded: set[str],
        request: RecommendationRequest,
        segments: dict[str, str],
    ) -> list[Recommendation]:
        # the popular fallback obeys the policy too
        keep = allowed_by_policy(pipeline, ranked.items, request.user_id, segments)
        if request.category is not None:
            keep &= np.isin(ranked.items, self._category_items(pipeline, request.category))
        keys = pipeline.bundle.items.keys_of(ranked.items)
        bad = excluded | self._unlisted
        if bad:
            keep &= np.array([k not in bad for k in keys], dtype=bool)
        recs = self.engine.to_recommendations(ranked, pipeline)
        return [r for r, ok in zip(recs, keep.tolist(), strict=True) if ok]

    def _top_up(
        self,
        pipeline: Pipeline,
        taken: set[str],
        request: RecommendationRequest,
        have: int,
        segments: dict[str, str],
    ) -> list[Recommendation]:
        need = 4 * (request.limit - have) + len(taken) + len(self._unlisted)
        seen = pipeline.history_rows([request.user_id]).indices
        ranked = pipeline.popular(pipeline.n_items)
        size = need + len(seen) + 64
        while True:  # the eligible head of the popular list: a growing prefix, not the catalogue
            pool = ranked[:size]
            pool = pool[allowed_by_policy(pipeline, pool, request.user_id, segments)]
            if request.category is not None:
                pool = pool[np.isin(pool, self._category_items(pipeline, request.category))]
            pool = pool[~np.isin(pool, seen)]
            if len(pool) >= need or size >= len(ranked):
                break
            size *= 4
        pool = pool[:need]
        keys = pipeline.bundle.items.keys_of(pool)
        bad = taken | self._unlisted
        chosen = [i for i, key in zip(pool.tolist(), keys, strict=True) if key not in bad]
        chosen = chosen[: request.limit - have]
        items = np.asarray(chosen, dtype=np.int64)
        page = RankedList(items, pipeline.bundle.popularity[items].astype(np.float32), [])
        page.reasons = [Reason("Popular now", POPULAR)] * len(items)
        return self.engine.to_recommendations(page, pipeline)

    def _category_items(self, pipeline: Pipeline, category: str) -> np.ndarray:
        version = pipeline.bundle.version
        if version not in self._categories:
            self._categories[version] = items_by_category(self.engine, pipeline)
        return self._categories[version].get(category, np.zeros(0, dtype=np.int64))

    def similar(self, item_id: str, limit: int) -> list[Recommendation]:
        """Items similar to ``item_id`` (404 when it is not in the trained catalogue)."""
        return self.similar_page(item_id, limit)[0]

    def similar_page(self, item_id: str, limit: int) -> tuple[list[Recommendation], str]:
        """:meth:`similar` and the model version that answered."""
        self.catch_up()
        if item_id in self._unlisted:
            raise NotFoundError(f"item {item_id!r} is unlisted")
        with self._lock:
            recs = self.engine.similar_items(item_id, min(MAX_FETCH, limit + len(self._unlisted)))
            version = self._pipeline().bundle.version
        return [r for r in recs if r.item_id not in self._unlisted][:limit], version

    # ---- writes ------------------------------------------------------------------------------

    def log_interactions(self, events: list[dict[str, Any]]) -> tuple[int, int]:
        """Validate every event, then append all durably; returns (accepted, duplicates)."""
        now = _now_ms()
        parsed = []
        for row, event in enumerate(events, start=1):
            data = {**event, "type": event.get("action"), "timestamp": event.get("timestamp") or now}
            context = {}
            if event.get("dwell_ms") is not None:
                context["dwell_ms"] = str(event["dwell_ms"])
            data["context"] = context
            parsed.append(Interaction.from_dict(data, row=row if len(events) > 1 else None))
        try:
            # end and append as one step: between them another request could log an id of this batch,
            # whose copy here would then count as new (two requests "accepting" one event)
            with self._append_lock:
                end = self.engine.event_log.end_offset
                offsets = np.asarray(self.engine.event_log.append(parsed))
        except UnavailableError as exc:  # 503: the client retries; event_id makes that safe
            raise UnavailableError(f"interactions not acknowledged, retry them: {exc.message}") from exc
        # the stored events got distinct offsets from ``end`` on; a duplicate has its original's offset,
        # which is one of those when the original came earlier in the same batch
        accepted = len(np.unique(offsets[offsets >= end]))
        duplicates = len(parsed) - accepted
        self.metrics.events.labels(kind="interaction").inc(accepted)
        self.metrics.duplicates.inc(duplicates)
        return accepted, duplicates

    def log_impression(self, data: dict[str, Any]) -> None:
        """Append one served page's impression durably."""
        shown, positions = data["items_shown"], data["positions"]
        if len(shown) != len(positions):
            raise ValidationError(
                f"has {len(positions)} entries but items_shown has {len(shown)}", field="positions"
            )
        experiment, arm = self.experiments.stamp(data["user_id"], data.get("experiment"), data.get("arm"))
        event = Impression.from_dict(
            {
                "request_id": data["request_id"],
                "user_id": data["user_id"],
                "item_ids": shown,
                "positions": positions,
                "timestamp": data.get("timestamp") or _now_ms(),
                "surface": data.get("surface"),
                "experiment": experiment,
                "arm": arm,
                "propensities": data.get("propensities"),
                "sources": data.get("sources"),
            }
        )
        self.engine.event_log.append([event])
        self.metrics.events.labels(kind="impression").inc()

    def upsert_items(self, items: list[dict[str, Any]]) -> int:
        """Write items to the lake and the entity feed (validated as a whole first)."""
        parsed = [Item.from_dict(item, row=i + 1 if len(items) > 1 else None) for i, item in enumerate(items)]
        rows = [
            {
                "item_id": it.item_id,
                "title": it.title,
                "description": it.description,
                "categories": list(it.categories),
                "tags": list(it.tags),
                "creator_id": it.creator_id,
                "published_at": it.published_at,
                "status": it.status,
                "attributes": json.dumps(it.attributes),
            }
            for it in parsed
        ]
        self.engine.import_items(pa.Table.from_pylist(rows, schema=_ITEM_INPUT))
        changes = [EntityChange("item", r["item_id"], {"status": r["status"], "row": r}) for r in rows]
        self.feed.append(changes)
        self.catch_up()
        return len(rows)

    def unlist(self, item_id: str) -> None:
        """Unlist ``item_id``: durable in the lake and, once this returns, never recommended again."""
        known = self._known_item(item_id)
        if not known:
            raise NotFoundError(f"item {item_id!r} is not in the catalogue")
        current = current_item(self.engine, item_id)
        if current is not None:
            self.engine.import_items(
                current.set_column(current.schema.get_field_index("status"), "status", pa.array(["unlisted"]))
            )
        self.feed.append([EntityChange("unlist", item_id)])
        with self._lock:
            self._unlisted.add(item_id)
        self.catch_up()

    def _known_item(self, item_id: str) -> bool:
        if item_id in self._relisted:
            return True
        try:
            return self._pipeline().bundle.items.get(item_id) >= 0
        except FunnelError:
            return False

    def upsert_user(self, user_id: str, data: dict[str, Any]) -> None:
        """Write a user's attributes to the lake and the entity feed; the next page uses them."""
        user = User.from_dict({**data, "user_id": user_id})
        row = {
            "user_id": user.user_id,
            "created_at": user.created_at,
            "attributes": json.dumps(user.attributes),
        }
        self.engine.import_users(pa.Table.from_pylist([row], schema=_USER_INPUT))
        self.feed.append([EntityChange("user", user_id, {"attributes": user.attributes})])
        self.catch_up()


def _now_ms() -> int:
    return int(time.time() * 1000)


def finite_or_none(x: float) -> float | None:
    """JSON has no infinities: padding items (score ``-inf``) get ``None``."""
    return x if math.isfinite(x) else None
