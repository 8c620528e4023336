"""``MemoryEventLog``: the in-process event log — the test double and the zero-setup default.

Nothing survives the process (``persistent = False``); everything else — offsets, ``event_id``
dedup, consumer groups — behaves exactly like the durable backends, which the shared contract
suite (``tests/contract/test_event_log_contract.py``) checks.

Example:
    >>> from funnel.core.schema import Interaction
    >>> log = MemoryEventLog()
    >>> ev = Interaction("u1", "i1", "click", 1_700_000_000_000, event_id="e1")
    >>> log.append([ev, ev]).tolist(), log.append([ev]).tolist(), log.end_offset
    ([0, 0], [0], 1)
    >>> log.read(0, 10)[0].event.item_id
    'i1'
    >>> log.commit("trainer", 1); log.committed("trainer"), log.committed("other")
    (1, 0)
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from funnel.core.errors import UnavailableError
from funnel.events.dedup import DedupIndex, plan_append
from funnel.events.protocol import Event, LogRecord, check_commit_args, check_read_args


class MemoryEventLog:
    """An :class:`~funnel.events.protocol.EventLog` held in a Python list. Thread-safe.

    ``dedup_window``: see :class:`~funnel.events.dedup.DedupIndex` (default: exact).
    """

    persistent = False

    def __init__(self, dedup_window: int | None = None) -> None:
        self._events: list[Event] = []
        self._dedup = DedupIndex(dedup_window)
        self._groups: dict[str, int] = {}
        self._lock = threading.Lock()
        self._closed = False

    def __enter__(self) -> MemoryEventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MemoryEventLog(end_offset={len(self._events)})"

    def _check_open(self) -> None:
        if self._closed:
            raise UnavailableError("the event log is closed")

    def _event_ids_at(self, offsets: list[int]) -> dict[int, str | None]:
        return {off: getattr(self._events[off], "event_id", None) for off in offsets}

    def append(self, events: Sequence[Event]) -> np.ndarray:
        """Store ``events``; one int64 offset per input, duplicates get their original's."""
        with self._lock:
            self._check_open()
            plan = plan_append(events, self._dedup, len(self._events), self._event_ids_at)
            start = len(self._events)
            self._events.extend(events[i] for i in plan.new)
            ids = [(h, start + k) for k, h in enumerate(plan.hashes) if h]
            if ids:
                self._dedup.add([h for h, _ in ids], [off for _, off in ids])
            return plan.offsets

    def read(self, from_offset: int, max_records: int) -> list[LogRecord]:
        """Up to ``max_records`` records from ``from_offset`` on (empty past the end)."""
        check_read_args(from_offset, max_records)
        with self._lock:
            self._check_open()
            stop = min(len(self._events), from_offset + max_records)
            return [LogRecord(off, self._events[off]) for off in range(from_offset, stop)]

    def commit(self, group: str, offset: int) -> None:
        """Record that ``group`` will next read ``offset`` (``0 <= offset <= end_offset``)."""
        with self._lock:
            self._check_open()
            check_commit_args(group, offset, len(self._events))
            self._groups[group] = int(offset)

    def committed(self, group: str) -> int:
        """The next offset ``group`` should read; 0 if it never committed."""
        with self._lock:
            self._check_open()
            return self._groups.get(group, 0)

    @property
    def end_offset(self) -> int:
        """The offset the next appended event will get."""
        return len(self._events)

    def close(self) -> None:
        """Mark the log closed; later calls raise ``UnavailableError``. Idempotent."""
        self._closed = True
