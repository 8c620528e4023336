"""``ExperimentBook``: the experiments one API worker serves, kept in step with every other worker.

The durable copy is the data directory's experiments file (:mod:`funnel.experiments.store`);
a worker loads it at start. A change made through the admin API (start, ramp, stop) is written
to that file under its lock and then appended to the entity feed as an ``experiment`` change
holding the whole record; every worker applies the feed before it serves a request (as it does
item changes), keeping per experiment the record with the highest revision. So in Redis mode a
ramp or a stop made through one worker holds in every worker from its next request on.

:meth:`ExperimentBook.assign` gives a user's arm in the running experiment, with the arm's
overrides; :meth:`ExperimentBook.stamp` fills an impression's experiment and arm.

Example:
    >>> import tempfile
    >>> from funnel.api.entity_feed import open_entity_feed
    >>> feed = open_entity_feed("memory://")
    >>> book = ExperimentBook(tempfile.mkdtemp(), feed)
    >>> rec = book.start({"name": "e1", "arms": [{"name": "a"}, {"name": "b", "overrides": {}}]})
    >>> a = book.assign("u1")
    >>> a.experiment, a.arm in ("a", "b"), book.stamp("u1", None, None) == ("e1", a.arm)
    ('e1', True, True)
    >>> _ = book.stop("e1")
    >>> book.assign("u1") is None
    True
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from funnel.api.entity_feed import EntityChange, EntityFeed
from funnel.core.errors import NotFoundError
from funnel.experiments.assignment import assign
from funnel.experiments.overrides import ArmOverrides
from funnel.experiments.store import FILE_NAME, ExperimentRecord, ExperimentStore

KIND = "experiment"
"""The entity-feed change kind of an experiment record."""


@dataclass(frozen=True)
class Assignment:
    """A user's place in the running experiment: its name, the arm, and what the arm overrides."""

    experiment: str
    arm: str
    overrides: ArmOverrides


class ExperimentBook:
    """One worker's view of the experiments; see the module docstring."""

    def __init__(self, data_dir: str | Path, feed: EntityFeed) -> None:
        self.store = ExperimentStore(Path(data_dir) / FILE_NAME)
        self.feed = feed
        self._lock = threading.Lock()
        self._records: dict[str, ExperimentRecord] = self.store.load()

    # ---- reads -------------------------------------------------------------------------------

    def get(self, name: str) -> ExperimentRecord:
        """The experiment ``name`` (:class:`NotFoundError` when there is none)."""
        record = self._records.get(name)
        if record is None:
            raise NotFoundError(f"no experiment {name!r}")
        return record

    def all(self) -> list[ExperimentRecord]:
        """Every experiment, running first, then newest first."""
        return sorted(self._records.values(), key=lambda r: (not r.running, -r.created_ms, r.name))

    def running(self) -> ExperimentRecord | None:
        """The running experiment, if any."""
        return next((r for r in self._records.values() if r.running), None)

    def assign(self, user_id: str) -> Assignment | None:
        """``user_id``'s arm in the running experiment (None: no experiment, or the user is not in it)."""
        record = self.running()
        if record is None:
            return None
        arm = assign(record.experiment, user_id)
        return None if arm is None else Assignment(record.name, arm, record.overrides_of(arm))

    def stamp(self, user_id: str, experiment: str | None, arm: str | None) -> tuple[str | None, str | None]:
        """An impression's ``(experiment, arm)``: as the client sent them, else the user's assignment.

        Clients should echo the response's ``experiment`` and ``arm``; when an impression carries
        neither, the server fills them from the deterministic assignment at logging time.
        """
        if experiment is not None or arm is not None:
            return experiment, arm
        found = self.assign(user_id)
        return (found.experiment, found.arm) if found is not None else (None, None)

    # ---- changes -----------------------------------------------------------------------------

    def start(self, config: Mapping[str, Any]) -> ExperimentRecord:
        """Create and start an experiment (see :meth:`ExperimentStore.create`)."""
        return self._publish(self.store.create(config))

    def ramp(self, name: str, ramp: float) -> ExperimentRecord:
        """Change the percentage of users in ``name``."""
        return self._publish(self.store.ramp(name, ramp))

    def stop(self, name: str) -> ExperimentRecord:
        """Stop ``name`` for good."""
        return self._publish(self.store.stop(name))

    def apply(self, data: Mapping[str, Any]) -> None:
        """Apply a record from the entity feed (an older revision than the one held is ignored)."""
        record = ExperimentRecord.from_dict(data)
        with self._lock:
            if record.newer_than(self._records.get(record.name)):
                self._records = {**self._records, record.name: record}

    def _publish(self, record: ExperimentRecord) -> ExperimentRecord:
        self.feed.append([EntityChange(KIND, record.name, record.to_dict())])
        self.apply(record.to_dict())
        return record
