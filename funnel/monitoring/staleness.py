"""Staleness alarms: a consumer that stopped consuming, a live model that stopped being retrained.

**Consumer.** The worker (consumer group ``worker``, :mod:`funnel.api.worker`) commits its
position in the event log and, on every step, writes a *heartbeat* —
``<data_dir>/monitoring/consumer-<group>.json`` with the offset it consumed to and the wall time
(:func:`write_heartbeat`). Its *lag* is ``end_offset - committed``; pending events have been
waiting since the later of the heartbeat and the first pending event's timestamp (without a
heartbeat, the event's timestamp alone). The alarm fires when events wait longer than
``consumer_max_wait_s``: a consumer that is alive but has nothing to read never fires, and a
stopped one fires once traffic has waited that long.

**Model.** The live version of :class:`~funnel.training.registry.ModelRegistry` was trained at
its manifest's ``created_at_ms`` (else the time its name records, ``YYYYmmdd-HHMMSS-…`` UTC,
else the manifest's modification time); the alarm fires when that is more than ``model_max_age_h`` ago.

Example:
    >>> import tempfile
    >>> from funnel.core.schema import Interaction
    >>> from funnel.events.memory_log import MemoryEventLog
    >>> log, d = MemoryEventLog(), tempfile.mkdtemp()
    >>> _ = log.append([Interaction("u", "i", "click", 1_700_000_000_000)])
    >>> log.commit("worker", 1); write_heartbeat(d, "worker", 1, now_s=1_700_000_000.0)
    >>> _ = log.append([Interaction("u", "j", "click", 1_700_000_060_000)])   # then it stopped
    >>> st = consumer_status(log, "worker", d, now_s=1_700_000_060.0 + 601)
    >>> st.lag, st.waiting_s, consumer_alarm(st).status
    (1, 601.0, 'FIRING')
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from funnel.events.protocol import EventLog
from funnel.monitoring.alarms import Alarm, MonitorConfig
from funnel.training.registry import ModelRegistry

MONITORING_DIR = "monitoring"
"""Folder under the data directory for heartbeats and the last skew check."""


def heartbeat_path(data_dir: str | Path, group: str) -> Path:
    """Where consumer ``group`` writes its heartbeat."""
    return Path(data_dir) / MONITORING_DIR / f"consumer-{group}.json"


def write_heartbeat(data_dir: str | Path, group: str, committed: int, now_s: float | None = None) -> None:
    """Record that ``group`` consumed everything before ``committed`` at ``now_s`` (atomic replace)."""
    path = heartbeat_path(data_dir, group)
    path.parent.mkdir(parents=True, exist_ok=True)
    at = time.time() if now_s is None else float(now_s)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"group": group, "committed": int(committed), "at": at}))
    os.replace(tmp, path)


def read_heartbeat(data_dir: str | Path, group: str) -> dict | None:
    """The last heartbeat of ``group`` (``committed``, ``at``), or None when there is none."""
    try:
        return json.loads(heartbeat_path(data_dir, group).read_text())
    except (FileNotFoundError, ValueError):
        return None


@dataclass(frozen=True)
class ConsumerStatus:
    """Where a consumer group stands: position, lag, and how long pending events have waited."""

    group: str
    committed: int
    end: int
    heartbeat_at: float | None
    """Wall time (epoch s) of the consumer's last heartbeat, None without one."""
    waiting_s: float
    """Seconds the pending events have waited for the consumer (0 without pending events)."""

    @property
    def lag(self) -> int:
        """Events logged but not yet consumed."""
        return self.end - self.committed


def consumer_status(
    log: EventLog, group: str, data_dir: str | Path | None = None, now_s: float | None = None
) -> ConsumerStatus:
    """The status of consumer ``group`` of ``log`` (its heartbeat read from ``data_dir``)."""
    now_s = time.time() if now_s is None else float(now_s)
    committed, end = log.committed(group), log.end_offset
    beat = read_heartbeat(data_dir, group) if data_dir is not None else None
    beat_at = float(beat["at"]) if beat else None
    waiting = 0.0
    if end > committed:
        first = log.read(committed, 1)
        since = first[0].event.timestamp / 1000.0 if first else now_s
        if beat_at is not None:
            since = max(since, beat_at)
        waiting = max(0.0, now_s - since)
    return ConsumerStatus(group, committed, end, beat_at, waiting)


def consumer_alarm(status: ConsumerStatus, config: MonitorConfig | None = None) -> Alarm:
    """``consumer_stalled``: pending events waited longer than ``consumer_max_wait_s``."""
    limit = (config or MonitorConfig()).consumer_max_wait_s
    msg = (
        f"consumer {status.group!r}: {status.lag} event(s) pending for {status.waiting_s / 60:.1f} min "
        f"(limit {limit / 60:.0f} min)"
    )
    return Alarm.check("consumer_stalled", status.waiting_s, limit, "s", msg)


def trained_at(registry: ModelRegistry, version: str) -> float:
    """When ``version`` was trained (epoch s): its manifest's ``created_at_ms``, else its name, else mtime."""
    manifest = registry.path(version) / "manifest.json"
    try:
        created = json.loads(manifest.read_text()).get("created_at_ms")
    except (OSError, ValueError):
        created = None
    if isinstance(created, int | float) and created > 0:
        return created / 1000.0
    try:
        return datetime.strptime(version[:15], "%Y%m%d-%H%M%S").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return manifest.stat().st_mtime


def model_age_h(registry: ModelRegistry, now_s: float | None = None) -> tuple[str | None, float]:
    """The live version and its age in hours (``(None, nan)`` without a live model)."""
    version = registry.live()
    if version is None:
        return None, math.nan
    now_s = time.time() if now_s is None else float(now_s)
    return version, (now_s - trained_at(registry, version)) / 3600.0


def model_alarm(
    registry: ModelRegistry, config: MonitorConfig | None = None, now_s: float | None = None
) -> Alarm:
    """``model_stale``: the live model is older than ``model_max_age_h``."""
    limit = (config or MonitorConfig()).model_max_age_h
    version, age = model_age_h(registry, now_s)
    msg = (
        "no live model"
        if version is None
        else f"live model {version} trained {age:.1f} h ago (limit {limit:g} h)"
    )
    return Alarm.check("model_stale", age, limit, "h", msg)
