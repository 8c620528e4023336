"""``Worker``: the background half of serving — consume the event log and retrain on a schedule.

The worker reads the event log as consumer group ``worker`` (its position survives restarts),
and retrains (``Engine.train``, which makes the new version live if the gate passes it: API
workers pick it up on their next request) when ``retrain_events`` new events arrived since the
newest version's data (live, or rejected by the gate: a rejected retrain waits for that many
more events), or when ``retrain_interval_s`` passed since the last training with at least one
new event. ``funnel worker`` runs it as its own process; ``funnel serve`` without Redis runs it
in a thread beside the API (the embedded mode). Every step writes a heartbeat (the position and
the time) that the consumer-staleness alarm reads (:mod:`funnel.monitoring.staleness`).

Example:
    >>> import tempfile, pyarrow as pa
    >>> from funnel.engine import Engine
    >>> eng = Engine(tempfile.mkdtemp())
    >>> _ = eng.import_interactions(pa.table({"user_id": ["u1", "u2"], "item_id": ["a", "b"],
    ...                                      "timestamp": [1_700_000_000, 1_700_000_001]}))
    >>> w = Worker(eng, retrain_events=2, model="pop")
    >>> w.run_once(), eng.model_version is None
    ('no model yet: trained', False)
    >>> _ = eng.log_interactions(
    ...     [{"user_id": "u3", "item_id": "a", "type": "click", "timestamp": 1_700_000_002_000}])
    >>> w.run_once()
    'consumed 1 event(s); 1 since the last training'
"""

from __future__ import annotations

import logging
import threading
import time

from funnel.core.errors import FunnelError
from funnel.engine import Engine
from funnel.monitoring.staleness import write_heartbeat
from funnel.training.bundle import Bundle

log = logging.getLogger(__name__)
GROUP = "worker"


class Worker:
    """See the module docstring."""

    def __init__(
        self,
        engine: Engine,
        retrain_events: int | None = 10_000,
        retrain_interval_s: float | None = None,
        model: str = "auto",
    ) -> None:
        self.engine, self.retrain_events, self.retrain_interval_s = engine, retrain_events, retrain_interval_s
        self.model = model
        self._last_train = time.monotonic()
        self.trainings = 0

    def _since_last_training(self, end: int) -> int:
        versions = self.engine.registry.versions()  # live or not: a rejected one waits for more events
        if not versions:
            return end
        return end - Bundle.read_log_offset(self.engine.registry.path(versions[-1]))

    def run_once(self) -> str:
        """One step: advance the consumer position, retrain when due; returns what happened."""
        log_ = self.engine.event_log
        start, end = log_.committed(GROUP), log_.end_offset
        if end > start:
            log_.commit(GROUP, end)
        write_heartbeat(self.engine.data_dir, GROUP, end)  # for the staleness alarm (funnel.monitoring)
        if self.engine.registry.live() is None and not self.engine.registry.versions():
            if not self.engine.lake.parts("interactions") and end == 0:
                return "no data yet"
            self._train()
            return "no model yet: trained"
        pending = self._since_last_training(end)
        due = (self.retrain_events is not None and pending >= self.retrain_events) or (
            self.retrain_interval_s is not None
            and pending > 0
            and time.monotonic() - self._last_train >= self.retrain_interval_s
        )
        if due:
            self._train()
            return f"retrained on {pending} new event(s)"
        return f"consumed {end - start} event(s); {pending} since the last training"

    def _train(self) -> None:
        started = time.monotonic()
        summary = self.engine.train(model=self.model)
        self._last_train = time.monotonic()
        self.trainings += 1
        log.warning("worker trained %s in %.1fs", summary.version, self._last_train - started)

    def run(self, stop: threading.Event, poll_s: float = 1.0) -> None:
        """Loop until ``stop`` is set; errors are logged and retried at the next poll."""
        while not stop.is_set():
            try:
                self.run_once()
            except FunnelError as exc:
                log.warning("worker step failed: %s", exc)
            except Exception:
                log.exception("worker step failed")
            stop.wait(poll_s)
