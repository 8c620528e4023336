"""``UserHistory``: a user's latest interactions, from the lake (imported) and the event log (online).

The lake part is one DuckDB query over the interactions' Parquet parts (filtered by user, newest
first). The log part is an index of the last :data:`PER_USER` interactions of every user, built
by tailing the event log from its start (each API worker keeps its own, caught up on every call).

Example:
    >>> import tempfile, pyarrow as pa
    >>> from funnel.engine import Engine
    >>> eng = Engine(tempfile.mkdtemp())
    >>> _ = eng.import_interactions(
    ...     pa.table({"user_id": ["u1"], "item_id": ["a"], "timestamp": [1_700_000_000]}))
    >>> _ = eng.log_interactions(
    ...     [{"user_id": "u1", "item_id": "b", "type": "like", "timestamp": 1_700_000_100_000}])
    >>> [(e["item_id"], e["action"], e["source"]) for e in UserHistory(eng).get("u1", 10)]
    [('b', 'like', 'log'), ('a', 'click', 'lake')]
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from typing import TYPE_CHECKING, Any

import duckdb

from funnel.core.schema import Interaction

if TYPE_CHECKING:
    from funnel.engine import Engine

PER_USER = 200
"""Log interactions kept per user."""
_BATCH = 10_000


class UserHistory:
    """See the module docstring."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._offset = 0
        self._recent: dict[str, deque[Interaction]] = defaultdict(lambda: deque(maxlen=PER_USER))
        self._lock = threading.Lock()

    def _tail(self) -> None:
        log = self.engine.event_log
        end = log.end_offset
        while self._offset < end:
            batch = log.read(self._offset, min(_BATCH, end - self._offset))
            if not batch:
                break
            for record in batch:
                if isinstance(record.event, Interaction):
                    self._recent[record.event.user_id].append(record.event)
            self._offset = batch[-1].offset + 1

    def get(self, user_id: str, limit: int) -> list[dict[str, Any]]:
        """The user's ``limit`` latest interactions, newest first (``[]`` for an unknown user)."""
        with self._lock:
            self._tail()
            logged = list(self._recent.get(user_id, ()))
        rows = [
            {
                "item_id": e.item_id,
                "action": e.type,
                "value": e.value,
                "timestamp": e.timestamp,
                "source": "log",
            }
            for e in logged
        ]
        rows += self._from_lake(user_id, limit)
        rows.sort(key=lambda r: -r["timestamp"])
        return rows[:limit]

    def _from_lake(self, user_id: str, limit: int) -> list[dict[str, Any]]:
        parts = [str(p) for p in self.engine.lake.parts("interactions")]
        if not parts:
            return []
        with duckdb.connect() as con:
            found = con.execute(
                "SELECT item_id, type, value, epoch_ms(timestamp) FROM read_parquet(?) "
                "WHERE user_id = ? ORDER BY timestamp DESC LIMIT ?",
                [parts, user_id, limit],
            ).fetchall()
        return [
            {"item_id": item, "action": kind, "value": value, "timestamp": int(ts), "source": "lake"}
            for item, kind, value, ts in found
        ]
