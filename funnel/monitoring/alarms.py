"""Alarm thresholds and the :class:`Alarm` record every check returns.

The defaults are what ``funnel report`` and the API's ``/metrics`` use; ``docs/monitoring.md``
lists them with their metric names.

Example:
    >>> a = Alarm.check("model_stale", 30.0, 24.0, "h", "live model 30 h old")
    >>> a.firing, a.status
    (True, 'FIRING')
    >>> Alarm.check("model_stale", float("nan"), 24.0, "h", "no live model").status
    'no data'
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class MonitorConfig:
    """Windows and thresholds of the monitors."""

    consumer_group: str = "worker"
    """The event-log consumer group watched for stalls (``funnel worker``'s)."""
    consumer_max_wait_s: float = 600.0
    """Alarm when events have waited longer than this for the consumer (10 minutes)."""
    model_max_age_h: float = 24.0
    """Alarm when the live model was trained longer ago than this."""
    psi_threshold: float = 0.2
    """Alarm when a feature's PSI (served vs offline recomputation) exceeds this."""
    psi_bins: int = 20
    """Quantile bins of the PSI (features with at most this many distinct values: one bin per value)."""
    index_min_ratio: float = 0.9
    """Alarm when an ANN index holds fewer than this fraction of the listed catalogue."""
    window_s: float = 3600.0
    """Window of the quality gauges on ``/metrics``."""
    refresh_s: float = 30.0
    """``/metrics`` recomputes the quality gauges at most this often."""
    new_item_days: float = 7.0
    """Items published less than this long before being served count as new."""


@dataclass(frozen=True)
class Alarm:
    """One checked signal: its value against its threshold, and whether the alarm fires."""

    name: str
    firing: bool
    value: float
    threshold: float
    unit: str
    message: str

    @classmethod
    def check(cls, name: str, value: float, threshold: float, unit: str, message: str) -> Alarm:
        """An alarm firing when ``value > threshold`` (never for a NaN value: no data)."""
        return cls(name, bool(value > threshold), float(value), float(threshold), unit, message)

    @classmethod
    def below(cls, name: str, value: float, threshold: float, unit: str, message: str) -> Alarm:
        """An alarm firing when ``value < threshold`` (never for a NaN value)."""
        return cls(name, bool(value < threshold), float(value), float(threshold), unit, message)

    @property
    def status(self) -> str:
        """``FIRING``, ``ok`` or ``no data``."""
        if math.isnan(self.value):
            return "no data"
        return "FIRING" if self.firing else "ok"
