"""``Worker``: the background half of serving — consume the event log and retrain on a schedule.

The worker reads the event log as consumer group ``worker`` (its position survives restarts),
and retrains (``Engine.train``, which makes the new version live if the gate passes it: API
processes swap it in without a restart, :mod:`funnel.api.hot_swap`) when ``retrain_events`` new
events arrived since the newest version's data (live, or rejected by the gate: a rejected
retrain waits for that many more events), or when ``retrain_interval_s`` passed since the last
training with at least one new event. ``funnel worker`` runs it as its own process; ``funnel
serve`` without Redis runs it in a thread beside the API (the embedded mode). Every step writes
a heartbeat (the position and the time) that the consumer-staleness alarm reads
(:mod:`funnel.monitoring.staleness`).

Continuous learning: a retrain repeats the live version's recipe (its manifest's ``config``:
model, ``k``, baseline parameters, ranking settings such as the retrieval sources), unless
``model`` names one. Between retrains the API processes embed catalogue items PUT since and add
them to the ANN indexes (``Pipeline.add_items``); the retrain reads the lake's catalogue, so
those items are in the new version's indexes from the start, and items unlisted since are left
out of them (:func:`funnel.retrieval.sources.common.listed_mask`): index memory follows the
listed catalogue. After each training the worker logs the new version's index sizes against its
listed items (:attr:`Worker.index_report`); the API exports the served version's as
``funnel_index_items{source}`` and ``funnel_listed_items`` (:mod:`funnel.monitoring.index`).

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
from typing import Any

from funnel.core.artifacts import load_artifact
from funnel.core.errors import FunnelError
from funnel.engine import Engine
from funnel.monitoring.index import saved_index_sizes
from funnel.monitoring.staleness import write_heartbeat
from funnel.training.bundle import FORMAT_VERSION, Bundle
from funnel.training.gates import GateConfig

log = logging.getLogger(__name__)
GROUP = "worker"


class Worker:
    """See the module docstring.

    ``model``: train this model (default: the live version's recipe, ``auto`` before the first);
    ``gate``: the promotion gate's thresholds (default :class:`GateConfig`).
    """

    def __init__(
        self,
        engine: Engine,
        retrain_events: int | None = 10_000,
        retrain_interval_s: float | None = None,
        model: str | None = None,
        gate: GateConfig | None = None,
    ) -> None:
        self.engine, self.retrain_events, self.retrain_interval_s = engine, retrain_events, retrain_interval_s
        self.model, self.gate = model, gate
        self._last_train = time.monotonic()
        self.trainings = 0
        self.index_report: dict[str, Any] = {}
        """The last trained version's ANN index sizes against its listed items (``version``,
        ``listed``, ``indexes``: source -> items), as logged."""

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

    def recipe(self) -> dict[str, Any]:
        """The arguments of the next ``Engine.train``: the live version's recipe, or ``model``."""
        live = self.engine.registry.live()
        if self.model is not None or live is None:
            return {"model": self.model or "auto"}
        config = self.engine.registry.manifest(live).config
        keys = ("model", "k", "params", "ranking")
        return {key: config[key] for key in keys if config.get(key) is not None}

    def _train(self) -> None:
        started = time.monotonic()
        summary = self.engine.train(**self.recipe(), gate=self.gate)
        self._last_train = time.monotonic()
        self.trainings += 1
        folder = self.engine.registry.path(summary.version)
        listed = int(load_artifact(folder / "state", "bundle_state", FORMAT_VERSION).arrays["listed"].sum())
        sizes = saved_index_sizes(folder)
        self.index_report = {"version": summary.version, "listed": listed, "indexes": sizes}
        log.warning(
            "worker trained %s (%s) in %.1fs; ANN index items vs %d listed: %s",
            summary.version,
            summary.status,
            self._last_train - started,
            listed,
            ", ".join(f"{name} {n}" for name, n in sizes.items()) or "no ANN index",
        )

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
