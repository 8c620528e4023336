"""``Engine``: the public Python API of funnel — import data, train, recommend.

One data directory holds everything (see DESIGN.md, "Storage, embedded first")::

    <data_dir>/lake/        Parquet parts of interactions, items, users (funnel.data.lake)
    <data_dir>/events/      the durable event log of online events (file://)
    <data_dir>/idmaps/      persisted append-only IdMaps (users.arrow, items.arrow)
    <data_dir>/models/      versioned bundles and the LIVE pointer
    <data_dir>/served_features/  a sample of the feature rows served (funnel.features.serving)

Example:
    >>> import tempfile, pyarrow as pa
    >>> eng = Engine(tempfile.mkdtemp())
    >>> eng.import_interactions(pa.table({
    ...     "user_id": ["u1", "u1", "u2", "u2", "u3"], "item_id": ["a", "b", "a", "c", "b"],
    ...     "timestamp": [1_700_000_000 + i for i in range(5)]}))
    5
    >>> eng.train(model="pop").model
    'pop'
    >>> [r.item_id for r in eng.recommend("u3", k=2)]
    ['a', 'c']
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from funnel.core.errors import NotFoundError, NotTrainedError, ValidationError
from funnel.core.gc_pause import paused_gc
from funnel.core.schema import Interaction
from funnel.core.steps import step
from funnel.data.lake import Lake
from funnel.data.tables import to_canonical
from funnel.events.protocol import LogRecord
from funnel.events.registry import open_event_log
from funnel.events.tables import interactions_table
from funnel.features.serving import SERVED_DIR, ServedFeatureLog
from funnel.pipeline import Pipeline, RankedList
from funnel.training.bundle import Bundle
from funnel.training.gates import GateConfig
from funnel.training.registry import ModelRegistry
from funnel.training.release import train_and_release
from funnel.training.trainer import TrainSummary

log = logging.getLogger(__name__)
_READ_BATCH = 10_000
SERVED_FEATURE_SAMPLE = 0.01
"""Default share of requests whose scored feature rows go to the served-feature log."""
SERVED_RETAIN_DAYS, SERVED_DAY_BYTES = 7, 1 << 30
"""The served-feature log's bounds on disk: days of files kept, bytes per day's file."""


@dataclass(frozen=True)
class Recommendation:
    """One recommended item: its id, score, human-readable reason, machine-readable code, title.

    ``propensity`` is the probability the page policy put the item in its slot (below 1 for
    exploration picks): log it with the impression for off-policy evaluation.
    """

    item_id: str
    score: float
    reason: str
    reason_code: str = ""
    title: str | None = None
    propensity: float = 1.0


class Engine:
    """A recommender over one data directory; see the module docstring for an example.

    ``source_deadline_ms``: when set, retrieval sources run concurrently and a source late for
    this deadline is dropped from that request (the HTTP app sets it; ``None`` keeps in-process
    results independent of timing).

    ``served_feature_sample``: the share of requests (by a hash of the request id) whose scored
    feature rows the ranking server logs to ``<data_dir>/served_features/`` for the skew monitor,
    in a background thread (:class:`~funnel.features.serving.ServedFeatureLog`); 0 turns it off.
    Only requests that carry an id are sampled (the HTTP API's; not :meth:`recommend` here).
    """

    def __init__(
        self,
        data_dir: str | Path = "./funnel-data",
        *,
        event_log_url: str | None = None,
        source_deadline_ms: float | None = None,
        served_feature_sample: float = SERVED_FEATURE_SAMPLE,
    ) -> None:
        if not 0.0 <= served_feature_sample <= 1.0:
            raise ValidationError("must be in [0, 1]", field="served_feature_sample")
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.lake = Lake(self.data_dir / "lake")
        self.registry = ModelRegistry(self.data_dir / "models")
        self.event_log_url = event_log_url or f"file://{(self.data_dir / 'events').resolve()}"
        self.served_log: ServedFeatureLog | None = None
        """The served-feature log the ranking server writes (None when the sample rate is 0)."""
        if served_feature_sample > 0:
            folder, rate = self.data_dir / SERVED_DIR, served_feature_sample
            self.served_log = ServedFeatureLog(
                folder, rate, background=True, retain_days=SERVED_RETAIN_DAYS, max_day_bytes=SERVED_DAY_BYTES
            )
        self._log: Any = None
        self._pipeline: Pipeline | None = None
        self.source_deadline_ms = source_deadline_ms
        self.reload_live = True
        """:meth:`pipeline` loads the version ``LIVE`` names when it changed; a server turns this off and
        swaps versions in the background instead (:class:`funnel.api.hot_swap.HotSwapper`)."""

    # ---- data in -------------------------------------------------------------------------------

    def import_items(self, table: Any) -> int:
        """Add or update catalogue items (pandas or Arrow, columns of ``funnel.core.schema.ITEMS``)."""
        return self._write("items", to_canonical("items", table))

    def import_users(self, table: Any) -> int:
        """Add or update users (pandas or Arrow; ``user_id[, created_at, attributes]``)."""
        return self._write("users", to_canonical("users", table))

    def import_interactions(self, table: Any, *, time_unit: str = "auto") -> int:
        """Append interactions (pandas or Arrow: ``user_id, item_id, timestamp[, type, value]``).

        Integer timestamps are epoch seconds or milliseconds (``time_unit="s"|"ms"``; ``"auto"``
        takes values below 1e11 as seconds). Every row is validated first; any bad row raises
        ``ValidationError`` naming the rows, and then nothing is imported.
        """
        return self._write("interactions", to_canonical("interactions", table, time_unit))

    def _write(self, kind: str, table: pa.Table) -> int:
        with self.lake.writer() as w:
            w.write(kind, table)
            return w.commit()[kind]

    def log_interactions(self, events: Iterable[Interaction | dict[str, Any]]) -> np.ndarray:
        """Append online interactions to the durable event log; returns their offsets.

        Durable on return. Events with an ``event_id`` already logged are not added twice.
        """
        parsed = [
            e if isinstance(e, Interaction) else Interaction.from_dict(e, row=i + 1)
            for i, e in enumerate(events)
        ]
        return self.event_log.append(parsed)

    @property
    def event_log(self) -> Any:
        """The engine's event log (opened on first use)."""
        if self._log is None:
            self._log = open_event_log(self.event_log_url)
        return self._log

    def close(self) -> None:
        """Release the event log (its writer lock); write out the served-feature rows still queued."""
        if self.served_log is not None:
            self.served_log.close()
        if self._log is not None:
            self._log.close()
            self._log = None

    # ---- training ------------------------------------------------------------------------------

    def train(
        self,
        model: str = "auto",
        k: int = 10,
        params: dict[str, Any] | None = None,
        ranking: dict[str, Any] | None = None,
        *,
        gate: GateConfig | None = None,
        force: bool = False,
    ) -> TrainSummary:
        """Fit the pipeline and the strongest baseline on everything imported and logged; gate it.

        ``model="auto"`` compares the baselines on a held-out split and keeps the best NDCG@k;
        naming one (``ease``, ``als``, ``itemknn``, ``pop``) skips the comparison. With
        ``model="auto"`` the retrieval + ranking pipeline (:mod:`funnel.ranking`; ``ranking``: its
        arguments) is trained too and serves ``recommend``; the baseline serves similar items and
        is the fallback. A named model trains that baseline only.

        The new version goes live only if the gate passes (:mod:`funnel.training.gates`; ``gate``:
        its thresholds) or ``force`` is set; otherwise it stays in the registry as ``rejected``
        and the summary's ``status`` and ``gate["reason"]`` say why.
        """
        end = self.event_log.end_offset
        with step("compaction"):  # the event log's interactions as one table, beside the lake's
            log_table = self._read_log(0, end)
        if ranking is None and model == "auto":
            ranking = {}
        # the pipeline held keeps serving: the next pipeline() call (or a server's HotSwapper) moves on
        return train_and_release(
            self.data_dir, self.lake, self.registry, log_table, end, model, k, params, ranking, gate, force
        )

    def _read_log(self, start: int, end: int) -> pa.Table:
        return interactions_table(self._read_records(start, end))

    def _read_records(self, start: int, end: int) -> list[Any]:
        records: list[Any] = []
        offset = start
        while offset < end:
            batch = self.event_log.read(offset, min(_READ_BATCH, end - offset))
            if not batch:
                break
            records.extend(batch)
            offset = batch[-1].offset + 1
        return records

    # ---- serving -------------------------------------------------------------------------------

    @property
    def model_version(self) -> str | None:
        """The live model version, or None before the first training."""
        return self.registry.live()

    def set_source_deadline(self, deadline_ms: float | None) -> None:
        """Ask retrieval sources concurrently with this per-request deadline (``None``: in turn)."""
        self.source_deadline_ms = deadline_ms
        if self._pipeline is not None and self._pipeline.ranking is not None:
            self._pipeline.ranking.pipeline.retriever_.deadline_ms = deadline_ms

    def pipeline(self, catch_up: bool = True) -> Pipeline:
        """The serving pipeline of the live model, caught up with the event log unless told not to.

        The version ``LIVE`` names is loaded first when none is held, or (``reload_live``) when it
        names another version than the one held.
        """
        held = self._pipeline
        live = self.registry.live() if held is None or self.reload_live else held.bundle.version
        if live is None:
            if held is None:
                raise NotTrainedError(
                    f"no trained model in {self.data_dir}: run train() (or `funnel train`) first"
                )
        elif held is None or held.bundle.version != live:
            self.swap(self.load_pipeline(live, catch_up=False))
        if catch_up:
            self.catch_up()
        return self._pipeline  # type: ignore[return-value]

    def load_pipeline(self, version: str, catch_up: bool = True, until: int | None = None) -> Pipeline:
        """The serving pipeline of ``version``, fully loaded, without serving it (see :meth:`swap`).

        ``catch_up``: fold in the event log up to ``until`` (default: its end) first.
        """
        folder = self.registry.path(version)
        with paused_gc():  # millions of objects, none of them garbage (funnel.core.gc_pause)
            pipeline = Pipeline(Bundle.load(folder), folder, served_log=self.served_log)
            if pipeline.ranking is not None and self.source_deadline_ms is not None:
                pipeline.ranking.pipeline.retriever_.deadline_ms = self.source_deadline_ms
            if catch_up:
                self.catch_up(pipeline, until)
        return pipeline

    def swap(self, pipeline: Pipeline) -> Pipeline | None:
        """Serve ``pipeline`` from now on (one reference assignment); returns the one served before."""
        previous, self._pipeline = self._pipeline, pipeline
        return previous

    def catch_up(self, pipeline: Pipeline | None = None, until: int | None = None) -> list[LogRecord]:
        """Fold the events logged since the last look into ``pipeline`` (default: the served one).

        Reads up to ``until`` (default: the log's end); returns the records folded in. Raises
        ``UnavailableError`` when the event log cannot be read (the pipeline keeps the state it
        had: stale, but servable).
        """
        pipeline = self.pipeline(catch_up=False) if pipeline is None else pipeline
        end = self.event_log.end_offset if until is None else until
        if end <= pipeline.read_offset:
            return []
        records = self._read_records(pipeline.read_offset, end)
        pipeline.observe(records)
        pipeline.read_offset = end
        return records

    def to_recommendations(self, ranked: RankedList, pipeline: Pipeline) -> list[Recommendation]:
        """``ranked`` (item indices of ``pipeline``) as recommendations with ids, reasons and titles."""
        bundle = pipeline.bundle
        keys = bundle.items.keys_of(ranked.items)
        titles = bundle.titles.take(ranked.items.astype(np.int64)).to_pylist()
        prop = ranked.propensity if ranked.propensity is not None else np.ones(len(keys))
        return [
            Recommendation(key, float(score), reason.text, reason.code, title, float(p))
            for key, score, reason, title, p in zip(
                keys, ranked.scores.tolist(), ranked.reasons, titles, prop.tolist(), strict=True
            )
        ]

    def recommend(self, user_id: str, k: int = 10, **context: str) -> list[Recommendation]:
        """Top-``k`` items for ``user_id`` with reasons; seen and unlisted items excluded.

        ``context`` (``country``, ``device``, ``age_bucket``) overrides the user's attributes for
        this request, e.g. a country from the request for region licensing.
        """
        _check_k(k)
        pipeline = self.pipeline()
        return self.to_recommendations(pipeline.recommend([str(user_id)], k, context or None)[0], pipeline)

    def recommend_batch(
        self, user_ids: Sequence[str], k: int = 10, batch_size: int = 1024
    ) -> dict[str, list[str]]:
        """Top-``k`` item ids for many users at once."""
        _check_k(k)
        pipeline = self.pipeline()
        out: dict[str, list[str]] = {}
        ids = [str(u) for u in user_ids]
        for start in range(0, len(ids), batch_size):
            chunk = ids[start : start + batch_size]
            for user, ranked in zip(chunk, pipeline.recommend(chunk, k), strict=True):
                out[user] = pipeline.bundle.items.keys_of(ranked.items)
        return out

    def similar_items(self, item_id: str, k: int = 10) -> list[Recommendation]:
        """The ``k`` items most similar to ``item_id`` under the live model."""
        _check_k(k)
        pipeline = self.pipeline()
        index = pipeline.bundle.items.get(str(item_id))
        # the baseline model answers, and it knows its training catalogue only: an item added since
        # (Pipeline.add_items) gets similar items after the next training (it was a 422 from the model)
        if index < 0 or index >= pipeline.n_trained_items:
            raise NotFoundError(f"item {item_id!r} is not in the trained catalogue")
        return self.to_recommendations(pipeline.similar(index, k), pipeline)


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 1000:
        raise ValidationError(f"must be an integer from 1 to 1000, got {k!r}", field="k")
