"""A trained model version as the target policy of off-policy evaluation, replayed over the event log.

:func:`target_items` answers, for every logged slot (:mod:`funnel.experiments.logged_bandit`),
"which item would this version have put at this position of this page?". It loads the version's
serving pipeline (:meth:`~funnel.engine.Engine.load_pipeline`, without catching up), then walks
the logged impressions in log order and, before each, folds the event log into the pipeline up
to the impression's offset (:meth:`~funnel.pipeline.Pipeline.observe`): the page is ranked from
the state the serving policy had when it served the logged page — the user's history until then,
the online features, the clock. Impressions with no interaction logged between them share one
fold (impressions change no serving state); each page is still ranked alone, as the API served
it, because a batched call can order near-tied scores differently. The page is the version's
top-``k`` for the user (``k`` = the deepest logged position + 1) with exploration off — a
deterministic policy — and the arm-style ``overrides``
(:class:`~funnel.experiments.overrides.ArmOverrides`: head weights, re-ranking settings) on top,
so "the live version with other settings" is a target too.

What the replay does not reproduce: the request's country, device and surface (an impression
carries the user and the surface only: the page is ranked with the user's stored attributes);
items added through the API since the version was trained, and unlistings since (not in the
bundle: the target can neither pick the former nor drop the latter).

A version cannot be rewound: impressions logged before the end of its training data (its
bundle's log offset) have outcomes it has learned from and histories it holds; they are left out
(``before_version``), and none left is an error that says so.

Cost: one ranked page per impression (one fold of the log between interactions) plus one read of
the log.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from funnel.core.errors import ValidationError
from funnel.engine import Engine
from funnel.events.protocol import EventLog
from funnel.experiments.logged_bandit import LoggedSlots, logged_slots
from funnel.experiments.ope import OpeResult, evaluate
from funnel.experiments.overrides import ArmOverrides
from funnel.pipeline import Pipeline

_READ_BATCH = 10_000
DETERMINISTIC = {"explore_rate": 0.0, "explore_rate_cold": 0.0}
"""Re-ranking settings of every target page: no exploration slots."""


@dataclass(frozen=True)
class VersionEvaluation:
    """The estimates of one version and the rows behind them.

    Attributes:
        version: The evaluated version. result: The estimates (:class:`~funnel.experiments.ope.OpeResult`).
        slots: The logged slots used. targets: The version's item per slot (None: its page was shorter).
        before_version: Slots left out as older than the version's training data.
    """

    version: str
    result: OpeResult
    slots: LoggedSlots
    targets: np.ndarray
    before_version: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        out = {"version": self.version, **self.result.to_dict()}
        out["impressions"] = self.slots.impressions
        out["skipped"] = {
            "without_propensities": self.slots.without_propensities,
            "duplicates": self.slots.duplicates,
            "before_version": self.before_version,
        }
        return out

    def format(self) -> str:
        """The text report of ``funnel experiment ope``."""
        head = (
            f"policy {self.version}: {self.slots.impressions} impressions; left out: "
            f"{self.slots.without_propensities} without propensities, {self.slots.duplicates} retries, "
            f"{self.before_version} slots older than the version's data"
        )
        return head + "\n" + self.result.format()


def target_items(
    pipeline: Pipeline, log: EventLog, slots: LoggedSlots, overrides: ArmOverrides | None = None
) -> np.ndarray:
    """The item ``pipeline`` would place at each slot's position (None where its page is shorter)."""
    over = overrides or ArmOverrides()
    over = replace(over, rerank={**over.rerank, **DETERMINISTIC})
    out = np.full(len(slots), None, dtype=object)
    if not len(slots):
        return out
    clicks = _interaction_offsets(log, pipeline.read_offset, int(slots.offsets.max()))
    group = np.searchsorted(clicks, slots.offsets)  # same group: no interaction between the impressions
    for g in np.unique(group).tolist():
        rows = np.flatnonzero(group == g)
        _fold(pipeline, log, int(slots.offsets[rows].min()))
        requests, first = np.unique(slots.request_ids[rows], return_index=True)
        users = [str(slots.users[rows[i]]) for i in first]
        k = int(slots.positions[rows].max()) + 1
        # one user per call, as the API served them: a batch's scores differ in the last bits
        # (ALS's matrix product vs one row), which can reorder near-ties and so the page
        pages = [pipeline.recommend([user], k, overrides=over)[0] for user in users]
        keys = {rid: pipeline.bundle.items.keys_of(p.items) for rid, p in zip(requests, pages, strict=True)}
        for row in rows.tolist():
            page, pos = keys[slots.request_ids[row]], int(slots.positions[row])
            out[row] = page[pos] if pos < len(page) else None
    return out


def evaluate_version(
    data_dir: Any, log: EventLog, version: str, *, since_ms: int | None = None,
    overrides: ArmOverrides | None = None, max_position: int | None = None,
    max_impressions: int | None = None, alpha: float = 0.05,
) -> VersionEvaluation:  # fmt: skip
    """Off-policy estimates of ``version`` (with ``overrides``) from the logged slots of ``log``.

    ``max_position``: use the slots at positions below it only (1: the top slot, where the logged
    propensity is exact). Raises :class:`ValidationError` when no usable slot is left, naming why.
    """
    engine = Engine(data_dir, served_feature_sample=0)
    pipeline = engine.load_pipeline(version, catch_up=False)  # NotFoundError for an unknown version
    slots = logged_slots(log, since_ms, max_impressions)
    if not len(slots):
        why = f"{slots.without_propensities} without propensities" if slots.without_propensities else "none"
        raise ValidationError(
            f"no logged impressions with propensities in the window ({why}): log each page with the "
            "response's propensities (POST /v1/impressions), or move --since back",
            field="since",
        )
    if max_position is not None:
        slots = slots.subset(slots.positions < max_position)
    fresh = slots.offsets >= pipeline.read_offset
    before = int((~fresh).sum())
    slots = slots.subset(fresh)
    if len(slots) < 2:
        raise ValidationError(
            f"{before} logged slots are older than version {version}'s training data (log offset "
            f"{pipeline.read_offset}) and {len(slots)} newer: evaluate a version trained before the "
            "impressions were logged",
            field="policy",
        )
    targets = target_items(pipeline, log, slots, overrides)
    s = slots
    result = evaluate(s.items, s.positions, s.propensities, s.rewards, targets, s.request_ids, alpha=alpha)
    return VersionEvaluation(version, result, slots, targets, before)


def _interaction_offsets(log: EventLog, start: int, end: int) -> np.ndarray:
    """Sorted offsets of the interactions in ``[start, end]`` (the moments the serving state changes)."""
    from funnel.core.schema import Interaction

    found = [r.offset for r in _records(log, start, end + 1) if isinstance(r.event, Interaction)]
    return np.asarray(found, dtype=np.int64)


def _fold(pipeline: Pipeline, log: EventLog, until: int) -> None:
    """Fold the log into ``pipeline`` up to offset ``until`` (exclusive), as serving does before a page."""
    if until > pipeline.read_offset:
        pipeline.observe(_records(log, pipeline.read_offset, until))
        pipeline.read_offset = until


def _records(log: EventLog, start: int, end: int) -> list[Any]:
    out: list[Any] = []
    offset = start
    while offset < end:
        batch = log.read(offset, min(_READ_BATCH, end - offset))
        if not batch:
            break
        out.extend(batch)
        offset = batch[-1].offset + 1
    return [r for r in out if r.offset < end]
