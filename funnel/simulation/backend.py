"""Where a simulation's pages come from: the real engine in process, behind one small protocol.

:class:`InProcess` drives an :class:`~funnel.engine.Engine` the way ``funnel serve`` does:
pages from ``Pipeline.recommend`` (batched; the scenario's serving settings as experiment-arm
overrides on the request path), impressions and clicks appended to the durable event log (the
write path of ``POST /v1/impressions`` / ``POST /v1/interactions``), ``Engine.catch_up`` folding
them into the serving state, new items imported into the lake and added to the served pipeline
(what ``PUT /v1/items`` does, so they are retrievable before the next retrain), and retraining
with the live version's recipe through the gate, like :class:`funnel.api.worker.Worker`.
:mod:`funnel.simulation.http` is the same over HTTP.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import pyarrow as pa

from funnel.api.worker import Worker
from funnel.core.schema import Impression, Interaction
from funnel.engine import Engine
from funnel.experiments.overrides import ArmOverrides
from funnel.training.gates import GateConfig


class Page(Protocol):
    """A served page: item ids in slot order and each slot's propensity."""

    items: list[str]
    propensities: list[float]


class Served:
    """One served page (see :class:`Page`)."""

    __slots__ = ("items", "propensities")

    def __init__(self, items: list[str], propensities: list[float]) -> None:
        self.items, self.propensities = items, propensities


class Backend(Protocol):
    """What the day loop needs from a recommender (in process or over HTTP)."""

    def recommend(self, user_ids: list[str], k: int) -> list[Served]:
        """One page per user."""

    def write(self, impressions: list[dict[str, Any]], clicks: list[dict[str, Any]]) -> None:
        """Log the pages shown and the clicks (durably), then fold them into the serving state."""

    def add_items(self, rows: pa.Table) -> None:
        """Publish catalogue rows (``ITEMS`` columns)."""

    def retrain(self) -> dict[str, Any]:
        """Retrain now (the worker's job): ``status`` (``live`` / ``rejected``), ``gate_passed``."""


class InProcess:
    """The engine in this process (module docstring).

    ``gate``: the worker's gate thresholds; ``force``: retrains go live whatever the gate says.
    """

    def __init__(
        self, engine: Engine, overrides: ArmOverrides, gate: GateConfig | None = None, force: bool = False
    ) -> None:
        self.engine, self.overrides, self.gate, self.force = engine, overrides, gate, force
        self.worker = Worker(engine, retrain_events=None, retrain_interval_s=None, gate=gate)

    def recommend(self, user_ids: list[str], k: int) -> list[Served]:
        """Pages from the served pipeline, batched."""
        pipeline = self.engine.pipeline(catch_up=False)
        ranked = pipeline.recommend(user_ids, k, overrides=self.overrides)
        keys = pipeline.bundle.items.keys_of
        out = []
        for r in ranked:
            prop = r.propensity if r.propensity is not None else np.ones(len(r.items))
            out.append(Served(keys(r.items), prop.tolist()))
        return out

    def write(self, impressions: list[dict[str, Any]], clicks: list[dict[str, Any]]) -> None:
        """Append to the event log (validated like the API's bodies) and catch up."""
        events: list[Any] = [Impression.from_dict(x) for x in impressions]
        events += [Interaction.from_dict(x) for x in clicks]
        if events:
            self.engine.event_log.append(events)
        self.engine.catch_up()

    def add_items(self, rows: pa.Table) -> None:
        """Import into the lake, then index in the served pipeline."""
        self.engine.import_items(rows)
        self.engine.pipeline(catch_up=False).add_items(rows)

    def retrain(self) -> dict[str, Any]:
        """``Engine.train`` with the live recipe and the gate (the worker's step), then serve it."""
        self.worker.run_once()  # the consumer position and heartbeat, as the worker keeps them
        summary = self.engine.train(**self.worker.recipe(), gate=self.gate, force=self.force)
        self.engine.pipeline()  # load the new live version (if any) and catch it up with the log
        gate = summary.gate or {}
        # the gate's reason names versions (wall-clock ids): left out, the metrics stay reproducible
        return {"status": summary.status, "gate_passed": gate.get("passed")}
