"""Monitoring: quality monitors over the event log, staleness and skew alarms, index coverage, reports.

See ``docs/monitoring.md``. :mod:`funnel.monitoring.report` builds ``funnel report``;
:class:`~funnel.monitoring.collector.MonitoringCollector` exports the same signals on ``/metrics``.
"""

from funnel.monitoring.alarms import Alarm, MonitorConfig
from funnel.monitoring.frame import Catalogue, EventFrame
from funnel.monitoring.quality import QualityMonitor, QualitySnapshot, quality

__all__ = [
    "Alarm",
    "Catalogue",
    "EventFrame",
    "MonitorConfig",
    "QualityMonitor",
    "QualitySnapshot",
    "quality",
]
