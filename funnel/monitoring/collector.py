"""The monitors as Prometheus gauges: a collector the API registers beside its own metrics.

:class:`MonitoringCollector` computes on every scrape of ``/metrics`` (cheap reads: consumer
positions, the live model's name, index lengths, a small JSON file) and, at most every
``MonitorConfig.refresh_s`` seconds, the quality monitors over the last ``window_s`` seconds of
the event log (read back from its end). Each part fails alone: an unreadable log drops the
consumer and quality gauges from that scrape, with a warning, not the whole exposition.

Gauges (``docs/monitoring.md`` has the table):

- ``funnel_consumer_lag_events{group}``, ``funnel_consumer_waiting_seconds{group}``,
  ``funnel_consumer_heartbeat_age_seconds{group}``
- ``funnel_model_age_seconds``
- ``funnel_index_items{source}``, ``funnel_listed_items``, ``funnel_index_listed_ratio{source}``
- ``funnel_quality_{ctr,catalogue_coverage,category_entropy_bits,exposure_gini,new_item_share}``,
  ``funnel_quality_slots``, ``funnel_quality_clicked_slots``, ``funnel_source_click_share{source}``,
  ``funnel_source_ctr{source}``
- ``funnel_feature_psi{feature}``, ``funnel_skew_check_age_seconds`` (from the last ``funnel report``)
- ``funnel_alarm{name}``: 1 while an alarm fires (``consumer_stalled``, ``model_stale``,
  ``index_coverage``, ``feature_skew``)

Example:
    >>> import tempfile
    >>> from prometheus_client import CollectorRegistry, generate_latest
    >>> from funnel.engine import Engine
    >>> reg = CollectorRegistry()
    >>> reg.register(MonitoringCollector(Engine(tempfile.mkdtemp())))
    >>> text = generate_latest(reg).decode()
    >>> 'funnel_consumer_lag_events{group="worker"} 0.0' in text
    True
    >>> 'funnel_alarm{name="model_stale"} 0.0' in text   # no live model: no data, not firing
    True
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from funnel.monitoring.alarms import Alarm, MonitorConfig
from funnel.monitoring.frame import Catalogue, EventFrame
from funnel.monitoring.index import index_alarm, index_ratios, index_sizes
from funnel.monitoring.logview import read_since
from funnel.monitoring.quality import QualityMonitor, QualitySnapshot
from funnel.monitoring.skew import load_skews, skew_alarm
from funnel.monitoring.staleness import MONITORING_DIR, consumer_alarm, consumer_status, model_age_h

log = logging.getLogger(__name__)
_QUALITY = ("ctr", "catalogue_coverage", "category_entropy_bits", "exposure_gini", "new_item_share")


def _gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


class MonitoringCollector(Collector):
    """See the module docstring. ``engine``: the served :class:`~funnel.engine.Engine`."""

    def __init__(
        self, engine: Any, config: MonitorConfig | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.engine, self.config, self.clock = engine, config or MonitorConfig(), clock
        self._lock = threading.Lock()
        self._quality: tuple[float, QualitySnapshot | None] = (-math.inf, None)
        self._catalogue: tuple[tuple[str, ...], Catalogue] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The gauges of this scrape."""
        alarms: list[Alarm] = []
        for part in (self._consumer, self._model, self._index, self._quality_gauges, self._skew):
            try:
                yield from part(alarms)
            except Exception as exc:  # one failing monitor must not take /metrics down
                log.warning("monitor %s failed: %s", part.__name__.strip("_"), exc)
        g = _gauge("funnel_alarm", "1 while the named monitoring alarm fires", ["name"])
        for a in alarms:
            g.add_metric([a.name], 1.0 if a.firing else 0.0)
        yield g

    def _consumer(self, alarms: list[Alarm]) -> Iterator[GaugeMetricFamily]:
        group, now = self.config.consumer_group, self.clock()
        st = consumer_status(self.engine.event_log, group, self.engine.data_dir, now)
        alarms.append(consumer_alarm(st, self.config))
        lag = _gauge(
            "funnel_consumer_lag_events", "Events logged but not yet consumed by the group", ["group"]
        )
        lag.add_metric([group], st.lag)
        wait = _gauge("funnel_consumer_waiting_seconds", "How long pending events have waited", ["group"])
        wait.add_metric([group], st.waiting_s)
        beat = _gauge(
            "funnel_consumer_heartbeat_age_seconds", "Seconds since the group's heartbeat", ["group"]
        )
        beat.add_metric([group], math.nan if st.heartbeat_at is None else now - st.heartbeat_at)
        yield from (lag, wait, beat)

    def _model(self, alarms: list[Alarm]) -> Iterator[GaugeMetricFamily]:
        version, age_h = model_age_h(self.engine.registry, self.clock())
        limit = self.config.model_max_age_h
        alarms.append(Alarm.check("model_stale", age_h, limit, "h", f"live model {version}"))
        g = _gauge("funnel_model_age_seconds", "Seconds since the live model was trained")
        g.add_metric([], age_h * 3600.0)
        yield g

    def _index(self, alarms: list[Alarm]) -> Iterator[GaugeMetricFamily]:
        # the pipeline the service already loaded: a scrape never loads one (that takes seconds)
        pipeline = getattr(self.engine, "_pipeline", None)
        if pipeline is None:
            return
        sizes, n_listed = index_sizes(pipeline), int(pipeline.bundle.listed.sum())
        alarms.append(index_alarm(sizes, n_listed, self.config))
        items = _gauge("funnel_index_items", "Items in a retrieval source's ANN index", ["source"])
        ratio = _gauge("funnel_index_listed_ratio", "ANN index items / listed items", ["source"])
        for name, r in index_ratios(sizes, n_listed).items():
            items.add_metric([name], sizes[name])
            ratio.add_metric([name], r)
        listed = _gauge("funnel_listed_items", "Listed items in the served catalogue")
        listed.add_metric([], n_listed)
        yield from (items, ratio, listed)

    def catalogue(self) -> Catalogue:
        """The lake's catalogue, re-read only when its parts change."""
        lake = self.engine.lake
        parts = tuple(str(p) for p in lake.parts("items"))
        if self._catalogue is None or self._catalogue[0] != parts:
            self._catalogue = (parts, Catalogue.from_lake(lake))
        return self._catalogue[1]

    def quality_now(self) -> QualitySnapshot | None:
        """The quality monitors over the last ``window_s`` seconds (cached for ``refresh_s``)."""
        now = self.clock()
        with self._lock:
            at, snap = self._quality
            if now - at < self.config.refresh_s:
                return snap
            end_ms = int(now * 1000) + 1
            start_ms = end_ms - int(self.config.window_s * 1000)
            frame = EventFrame.from_events(read_since(self.engine.event_log, start_ms))
            snap = QualityMonitor(frame, self.catalogue(), self.config.new_item_days).at(start_ms, end_ms)
            self._quality = (now, snap)
            return snap

    def _quality_gauges(self, alarms: list[Alarm]) -> Iterator[GaugeMetricFamily]:
        snap = self.quality_now()
        if snap is None:
            return
        window = f"over the last {self.config.window_s:g} s"
        values = (
            snap.ctr,
            snap.coverage,
            snap.category_entropy_bits,
            snap.exposure_gini,
            snap.new_item_share,
        )
        for name, value in zip(_QUALITY, values, strict=True):
            g = _gauge(f"funnel_quality_{name}", f"Quality monitor {name} {window}")
            g.add_metric([], value)
            yield g
        for name, value in (("slots", snap.slots), ("clicked_slots", snap.clicks)):
            g = _gauge(f"funnel_quality_{name}", f"Served {name.replace('_', ' ')} {window}")
            g.add_metric([], value)
            yield g
        share = _gauge("funnel_source_click_share", f"Share of clicked slots by source {window}", ["source"])
        ctr = _gauge("funnel_source_ctr", f"CTR of the slots of a source {window}", ["source"])
        for name, stat in snap.sources.items():
            share.add_metric([name], stat.click_share)
            ctr.add_metric([name], stat.ctr)
        yield from (share, ctr)

    def _skew(self, alarms: list[Alarm]) -> Iterator[GaugeMetricFamily]:
        found = load_skews(self.engine.data_dir / MONITORING_DIR / "skew.json")
        if found is None:
            return
        at, skews = found
        alarms.append(skew_alarm(skews, self.config))
        psi = _gauge("funnel_feature_psi", "PSI of served vs offline-recomputed feature values", ["feature"])
        for s in skews:
            psi.add_metric([s.feature], s.psi)
        age = _gauge("funnel_skew_check_age_seconds", "Seconds since the last skew check (funnel report)")
        age.add_metric([], self.clock() - at)
        yield from (psi, age)
