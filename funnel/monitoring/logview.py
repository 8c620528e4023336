"""Reading an event log for monitoring: a lock-free view of a ``file://`` log, and time-bounded tails.

A ``file://`` log has one writer, which holds its lock for as long as it runs (``funnel serve``
does): opening it again with :class:`~funnel.events.file_log.FileEventLog` would fail with
``ConflictError``. :class:`FileLogSnapshot` reads the same directory without the lock — the
segments as far as they were complete when it was opened, and ``offsets.json`` — which is all
a monitor needs (it never appends; its ``commit`` only moves an in-memory position, so it can
drive :func:`~funnel.features.offline.compact` into a scratch lake). A torn or half-written tail
of the last segment (an append in flight) ends the snapshot there instead of being repaired.

:func:`open_readonly` gives such a view for any URL (``redis://`` logs need no lock and are
opened as usual). :func:`read_since` reads the tail of a log back to a time.

Example:
    >>> import tempfile
    >>> from funnel.core.schema import Interaction
    >>> from funnel.events.file_log import FileEventLog
    >>> path = tempfile.mkdtemp()
    >>> writer = FileEventLog(path)        # keeps its writer lock
    >>> _ = writer.append([Interaction("u", f"i{k}", "click", 1_700_000_000_000 + k) for k in range(5)])
    >>> writer.commit("worker", 3)
    >>> view = open_readonly(f"file://{path}")
    >>> view.end_offset, view.committed("worker")
    (5, 3)
    >>> [r.offset for r in read_since(view, 1_700_000_000_003) if r.event.timestamp >= 1_700_000_000_003]
    [3, 4]
    >>> writer.close()
"""

from __future__ import annotations

import os
from pathlib import Path

from funnel.core.errors import CorruptDataError
from funnel.events import segment as seg
from funnel.events.durable import load_json
from funnel.events.file_log import _SEGMENT_RE
from funnel.events.protocol import EventLog, LogRecord, check_read_args
from funnel.events.registry import open_event_log

TAIL_BATCH = 20_000
"""Records per backwards step of :func:`read_since`."""


class FileLogSnapshot:
    """A read-only view of the ``file://`` log in ``path`` as it was when opened (no writer lock).

    ``commit`` keeps positions in memory only (the log's ``offsets.json`` is never written).
    """

    persistent = True

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        if not (self.path / "log.json").exists():
            raise CorruptDataError(f"{self.path}: not a funnel event log (no log.json)")
        self._groups: dict[str, int] = {
            k: int(v) for k, v in load_json(self.path / "offsets.json", {}).items()
        }
        self._segments: list[seg.Segment] = []
        names = sorted(p.name for p in self.path.iterdir() if _SEGMENT_RE.match(p.name))
        for k, name in enumerate(names):
            segment = seg.Segment(int(name[:20]), self.path / name)
            last = k == len(names) - 1
            with open(segment.path, "rb") as fh:
                header = seg.read_header(fh)
                if header is None or header[0] != seg.SEGMENT_MAGIC:
                    if last:
                        break
                    raise CorruptDataError(f"{segment.path}: not a funnel event-log segment")
                try:
                    segment.load(fh, [], [])
                except seg.FrameError as exc:
                    if not last:
                        raise CorruptDataError(f"{segment.path}: {exc} (not the log's tail)") from exc
            self._segments.append(segment)

    def read(self, from_offset: int, max_records: int) -> list[LogRecord]:
        """Up to ``max_records`` records from ``from_offset`` on, within the snapshot."""
        check_read_args(from_offset, max_records)
        segments = self._segments[seg.find_segment(self._segments, from_offset) :]
        return seg.read_records(segments, int(from_offset), int(max_records))

    def committed(self, group: str) -> int:
        """The next offset ``group`` reads, as of the snapshot (or as moved by :meth:`commit`)."""
        return self._groups.get(group, 0)

    def commit(self, group: str, offset: int) -> None:
        """Move ``group`` in memory only (for scratch consumers such as a compaction)."""
        self._groups[group] = int(offset)

    @property
    def end_offset(self) -> int:
        """The offset after the last complete record of the snapshot."""
        return self._segments[-1].end if self._segments else 0

    def append(self, events: object) -> None:
        """Not supported: the view is read-only."""
        raise TypeError("a FileLogSnapshot is read-only")

    def close(self) -> None:
        """Nothing to release (files are opened per read)."""


def open_readonly(url: str) -> EventLog:
    """A view of the log at ``url`` that never takes a writer lock: ``file://`` logs as a snapshot."""
    if url.startswith("file://"):
        return FileLogSnapshot(url[len("file://") :].split("?", 1)[0])  # type: ignore[return-value]
    return open_event_log(url)


def read_since(log: EventLog, since_ms: int, end: int | None = None) -> list[LogRecord]:
    """The records before offset ``end`` (default: the log's end), read back to ``since_ms``.

    Reads backwards in batches of :data:`TAIL_BATCH` and stops at the first batch whose events
    are all older than ``since_ms`` (left out): timestamps are client-supplied and only roughly ordered by
    offset, so the result may hold older events (filter by time) and misses events older than
    ``since_ms`` logged more than a batch before newer ones. Offset order.
    """
    end = log.end_offset if end is None else end
    chunks: list[list[LogRecord]] = []
    stop = end
    while stop > 0:
        start = max(0, stop - TAIL_BATCH)
        batch = [r for r in log.read(start, stop - start) if r.offset < stop]
        if not batch:
            break
        if max(r.event.timestamp for r in batch) < since_ms:
            break
        chunks.append(batch)
        stop = start
    return [r for chunk in reversed(chunks) for r in chunk]


class ScratchPositions:
    """``log`` with consumer positions kept in memory: a scratch consumer never moves real ones."""

    persistent = False

    def __init__(self, log: EventLog) -> None:
        self._log = log
        self._groups: dict[str, int] = {}

    def read(self, from_offset: int, max_records: int) -> list[LogRecord]:
        """The wrapped log's records."""
        return self._log.read(from_offset, max_records)

    def committed(self, group: str) -> int:
        """The in-memory position of ``group`` (0 until committed here)."""
        return self._groups.get(group, 0)

    def commit(self, group: str, offset: int) -> None:
        """Move ``group`` in memory."""
        self._groups[group] = int(offset)

    @property
    def end_offset(self) -> int:
        """The wrapped log's end."""
        return self._log.end_offset
