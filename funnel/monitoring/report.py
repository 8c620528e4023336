"""``funnel report``: every monitor over one data directory, as an HTML page with PNG plots.

:func:`collect` reads the data directory without disturbing a running server (the ``file://``
event log through a lock-free snapshot, consumer positions untouched) and evaluates:

- the quality monitors (:mod:`funnel.monitoring.quality`) over a sliding ``window_h`` window,
  stepped by a quarter window, across the last ``days`` days of served impressions (ending at the
  newest event: historical data is reported as of its own clock);
- staleness (:mod:`funnel.monitoring.staleness`) as of the wall clock: consumer ``worker`` and
  the live model's age;
- index size vs the listed catalogue of the lake (:mod:`funnel.monitoring.index`), from the
  live bundle's saved retriever (items added through the API since training are indexed in the
  serving processes only: ``/metrics`` reports those);
- training–serving skew (:mod:`funnel.monitoring.skew`) when the served-feature log has lines:
  recomputed offline from what the served store was built from (the live bundle's features lake
  of training events, plus the log compacted from the bundle's offset on) in a scratch folder;
  the result is also saved to ``<data_dir>/monitoring/skew.json`` for ``/metrics``.

:func:`~funnel.monitoring.report_html.write_report` renders ``index.html`` and the PNGs.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from funnel.data.lake import Lake
from funnel.events.protocol import EventLog
from funnel.features.offline import GROUP as LAKE_GROUP
from funnel.features.offline import LAKE_DIR, OfflineStore, compact
from funnel.monitoring.alarms import Alarm, MonitorConfig
from funnel.monitoring.frame import Catalogue, EventFrame
from funnel.monitoring.index import index_alarm, saved_index_sizes
from funnel.monitoring.logview import ScratchPositions, open_readonly, read_since
from funnel.monitoring.quality import DAY_MS, QualityMonitor, QualitySnapshot
from funnel.monitoring.skew import SERVED_DIR, FeatureSkew, feature_skew, read_served, save_skews, skew_alarm
from funnel.monitoring.staleness import (
    MONITORING_DIR,
    ConsumerStatus,
    consumer_alarm,
    consumer_status,
    model_age_h,
    model_alarm,
)
from funnel.ranking.serving import FEATURES_DIR
from funnel.training.bundle import Bundle
from funnel.training.registry import ModelRegistry

log = logging.getLogger(__name__)


@dataclass
class ReportData:
    """Everything the report shows; ``notes`` say why a section has no data."""

    data_dir: Path
    generated_at_s: float
    window_h: float
    series: list[QualitySnapshot] = field(default_factory=list)
    total_clicks: int = 0
    unattributed_clicks: int = 0
    consumer: ConsumerStatus | None = None
    model_version: str | None = None
    model_age_h: float = math.nan
    index_sizes: dict[str, int] = field(default_factory=dict)
    n_listed: int = 0
    skews: list[FeatureSkew] = field(default_factory=list)
    alarms: list[Alarm] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)


def collect(
    data_dir: str | Path,
    event_log_url: str | None = None,
    config: MonitorConfig | None = None,
    window_h: float = 24.0,
    days: float = 14.0,
    now_s: float | None = None,
) -> ReportData:
    """Evaluate every monitor over ``data_dir``; see the module docstring."""
    config = config or MonitorConfig()
    data_dir = Path(data_dir)
    now_s = time.time() if now_s is None else float(now_s)
    url = event_log_url or f"file://{(data_dir / 'events').resolve()}"
    data = ReportData(data_dir, now_s, window_h)
    events = open_readonly(url)
    try:
        catalogue = Catalogue.from_lake(Lake(data_dir / "lake"))
        data.n_listed = catalogue.n_listed
        _quality(data, events, catalogue, window_h, days, config)
        data.consumer = consumer_status(events, config.consumer_group, data_dir, now_s)
        data.alarms.append(consumer_alarm(data.consumer, config))
        registry = ModelRegistry(data_dir / "models")
        data.model_version, data.model_age_h = model_age_h(registry, now_s)
        data.alarms.append(model_alarm(registry, config, now_s))
        _index(data, config)
        _skew(data, events, catalogue, config)
    finally:
        events.close()
    return data


def _quality(
    data: ReportData,
    events: EventLog,
    catalogue: Catalogue,
    window_h: float,
    days: float,
    config: MonitorConfig,
) -> None:
    end = events.end_offset
    if end == 0:
        data.notes["quality"] = "the event log is empty"
        return
    clock = events.read(end - 1, 1)[0].event.timestamp + 1
    since = int(clock - days * DAY_MS)
    frame = EventFrame.from_events(r for r in read_since(events, since, end) if r.event.timestamp >= since)
    data.total_clicks, data.unattributed_clicks = len(frame.click_ts), frame.unattributed_clicks
    if not len(frame):
        data.notes["quality"] = f"no impressions logged in the {days:g} days before the newest event"
        return
    window_ms = int(window_h * 3_600_000)
    monitor = QualityMonitor(frame, catalogue, config.new_item_days)
    data.series = monitor.series(window_ms, max(1, window_ms // 4), end_ms=clock)


def _index(data: ReportData, config: MonitorConfig) -> None:
    if data.model_version is None:
        data.notes["index"] = "no live model"
    else:
        try:
            folder = ModelRegistry(data.data_dir / "models").path(data.model_version)
            data.index_sizes = saved_index_sizes(folder)
            if not data.n_listed:  # no catalogue in the lake: the model's
                data.n_listed = int(json.loads((folder / "manifest.json").read_text()).get("n_items", 0))
        except Exception as exc:  # a broken bundle must not stop the rest of the report
            log.warning("index sizes not available: %s", exc)
            data.notes["index"] = f"the live model could not be loaded: {exc}"
        if not data.index_sizes and "index" not in data.notes:
            data.notes["index"] = "the live model has no ANN-indexed retrieval source"
    data.alarms.append(index_alarm(data.index_sizes, data.n_listed, config))


def _skew(data: ReportData, events: EventLog, catalogue: Catalogue, config: MonitorConfig) -> None:
    lines = read_served(data.data_dir / SERVED_DIR)
    if not lines:
        data.notes["skew"] = f"no served-feature log in {data.data_dir / SERVED_DIR}"
    else:
        items = Lake(data.data_dir / "lake").read("items")
        with tempfile.TemporaryDirectory(prefix="funnel-skew-") as root:
            scratch = ScratchPositions(events)
            scratch.commit(LAKE_GROUP, _seed_lake(data.data_dir, Path(root)))
            compact(scratch, root)
            data.skews = feature_skew(lines, OfflineStore(root, items), config.psi_bins)
        save_skews(data.data_dir / MONITORING_DIR / "skew.json", data.skews, data.generated_at_s)
    data.alarms.append(skew_alarm(data.skews, config))


def _seed_lake(data_dir: Path, root: Path) -> int:
    """Copy the live bundle's features lake (its training events) into ``root``; its log offset.

    What the served store holds: the bundle's training events, then the log from its offset on.
    """
    registry = ModelRegistry(data_dir / "models")
    live = registry.live()
    if live is None:
        return 0
    folder = registry.path(live)
    lake = folder / FEATURES_DIR / LAKE_DIR
    if lake.is_dir():
        shutil.copytree(lake, root / LAKE_DIR)
    return Bundle.read_log_offset(folder)


def build_report(
    data_dir: str | Path,
    out: str | Path,
    event_log_url: str | None = None,
    config: MonitorConfig | None = None,
    window_h: float = 24.0,
    days: float = 14.0,
    now_s: float | None = None,
) -> tuple[Path, ReportData]:
    """:func:`collect`, then :func:`~funnel.monitoring.report_html.write_report`: (HTML path, data)."""
    from funnel.monitoring.report_html import write_report

    data = collect(data_dir, event_log_url, config, window_h, days, now_s)
    return write_report(data, out, config), data
