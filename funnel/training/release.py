"""Train, gate, promote: how a training run becomes (or does not become) the live version.

:func:`train_and_release` writes the candidate bundle (:func:`~funnel.training.trainer.train_bundle`,
status ``candidate``, parent = the live version), runs the gate (:func:`~funnel.training.gates.run_gate`)
and then either promotes the version (``live``; the previous one is ``retired``) or records it as
``rejected`` with the gate's reason. Either way the version stays in the registry with the gate's
report in its manifest (``metrics.gate``). ``force=True`` promotes whatever the gate says (the
report still says what it found).

Example:
    >>> import tempfile, pyarrow as pa
    >>> from funnel.engine import Engine
    >>> eng = Engine(tempfile.mkdtemp())
    >>> _ = eng.import_interactions(pa.table({"user_id": ["u1", "u1", "u2"], "item_id": ["a", "b", "a"],
    ...                                      "timestamp": [1_700_000_000, 1_700_000_001, 1_700_000_002]}))
    >>> s = eng.train(model="pop")   # Engine.train calls train_and_release
    >>> s.status, s.gate["passed"], eng.model_version == s.version
    ('live', True, True)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pyarrow as pa

from funnel.data.lake import Lake
from funnel.training.gates import GateConfig, run_gate
from funnel.training.registry import ModelRegistry
from funnel.training.trainer import TrainSummary, train_bundle, training_events

log = logging.getLogger(__name__)


def train_and_release(
    data_dir: Path,
    lake: Lake,
    registry: ModelRegistry,
    log_table: pa.Table,
    log_offset: int,
    model: str = "auto",
    k: int = 10,
    params: dict[str, Any] | None = None,
    ranking: dict[str, Any] | None = None,
    gate: GateConfig | None = None,
    force: bool = False,
) -> TrainSummary:
    """Train a candidate on everything held, gate it, promote or reject it; see the module docstring.

    Returns the training summary with ``status`` (``live`` or ``rejected``) and ``gate`` (the
    report as a dict, its ``reason`` naming every failed check).
    """
    config = gate or GateConfig()
    events = training_events(lake, log_table)
    parent = registry.live()
    summary = train_bundle(
        data_dir, lake, registry, log_table, log_offset, model, k, params, ranking,
        events=events, parent_version=parent,
    )  # fmt: skip

    def shadow(before: pa.Table, folder: Path) -> None:
        train_bundle(
            data_dir, lake, registry, log_table, log_offset, summary.model, k, params, ranking,
            events=before, folder=folder,
        )  # fmt: skip

    version = summary.version
    try:
        report = run_gate(registry, version, events, lake.read("users"), k, config, shadow)
    except Exception as exc:
        registry.set_status(version, "rejected", f"the gate failed to run: {exc}")
        raise
    summary.gate = report.to_dict()
    summary.gate["forced"] = force and not report.passed
    if report.passed or force:
        registry.set_status(version, "candidate", None, gate=summary.gate)
        registry.promote(version, note="gate passed" if report.passed else f"forced: {report.reason}")
        summary.status = "live"
    else:
        registry.set_status(version, "rejected", report.reason, gate=summary.gate)
        summary.status = "rejected"
        log.warning("version %s rejected by the gate: %s", version, report.reason)
    return summary
