"""Logged-bandit rows from the event log: one row per impressed slot that carries its propensity.

Off-policy evaluation (:mod:`funnel.experiments.ope`) needs, for every slot the serving policy
filled, the context, the action, the probability the policy had of taking it, and the reward.
:func:`logged_slots` reads them from the event log in two passes:

1. **Impressions** (``POST /v1/impressions``) that carry ``propensities`` (clients echo each
   item's ``propensity`` from the response: :class:`~funnel.engine.Recommendation`): one row per
   shown item with the user, the ``request_id``, the item, its ``position`` and its logging
   propensity (the probability the page policy put that item in that slot given the items above;
   exploration slots have it below 1: :mod:`funnel.rerank.exploration`). Impressions without
   propensities cannot be weighted and are counted, not used; a repeated ``request_id`` (a client
   retry) counts once. ``since_ms`` leaves out older impressions; ``max_impressions`` keeps the
   newest ones only.
2. **Rewards**: a slot's reward is 1 when an *engaged* interaction
   (:data:`~funnel.experiments.exposure.ENGAGED_TYPES`) clicked it, joined as the experiment
   report joins them: by the interaction's ``request_id``, else the latest page that showed the
   user that item before the interaction.

Example:
    >>> from funnel.core.schema import Impression, Interaction
    >>> from funnel.events.memory_log import MemoryEventLog
    >>> log, t = MemoryEventLog(), 1_700_000_000_000
    >>> _ = log.append([
    ...     Impression("r1", "u1", ("a", "b"), (0, 1), t, propensities=(1.0, 0.25)),
    ...     Impression("r2", "u2", ("c",), (0,), t),                       # no propensities: skipped
    ...     Interaction("u1", "b", "click", t + 5, request_id="r1")])
    >>> rows = logged_slots(log)
    >>> rows.items.tolist(), rows.positions.tolist(), rows.propensities.tolist(), rows.rewards.tolist()
    (['a', 'b'], [0, 1], [1.0, 0.25], [0.0, 1.0])
    >>> rows.impressions, rows.without_propensities
    (1, 1)
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from funnel.core.schema import Impression, Interaction
from funnel.events.protocol import EventLog, iter_records
from funnel.experiments.exposure import ENGAGED_TYPES, _slot


@dataclass(frozen=True)
class LoggedSlots:
    """The logged bandit: one row per impressed slot, in log order.

    Attributes:
        request_ids, users, items: The page, its user and the item shown (object arrays).
        positions: The slot's position on the page (0 = top). propensities: The logging policy's
            probability of that item in that slot, in (0, 1]. rewards: 1.0 when the slot was clicked.
        offsets: The impression's event-log offset (the state before it is what served the page).
        timestamps: The impression's time (epoch ms).
        impressions: Impressions used. without_propensities: Impressions left out (no propensities).
        duplicates: Impressions left out as retries (a ``request_id`` seen before).
    """

    request_ids: np.ndarray
    users: np.ndarray
    items: np.ndarray
    positions: np.ndarray
    propensities: np.ndarray
    rewards: np.ndarray
    offsets: np.ndarray
    timestamps: np.ndarray
    impressions: int = 0
    without_propensities: int = 0
    duplicates: int = 0

    def __len__(self) -> int:
        """The number of slots."""
        return len(self.items)

    def subset(self, keep: np.ndarray) -> LoggedSlots:
        """The slots where ``keep`` (a bool mask) is true; the counts are kept."""
        pick = np.asarray(keep, dtype=bool)
        return LoggedSlots(
            self.request_ids[pick], self.users[pick], self.items[pick], self.positions[pick],
            self.propensities[pick], self.rewards[pick], self.offsets[pick], self.timestamps[pick],
            len(np.unique(self.request_ids[pick])), self.without_propensities, self.duplicates,
        )  # fmt: skip


def logged_slots(
    log: EventLog, since_ms: int | None = None, max_impressions: int | None = None
) -> LoggedSlots:
    """The logged-bandit rows of ``log`` (see the module docstring)."""
    pages: dict[str, tuple[str, frozenset[str]]] = {}
    shown_at: dict[tuple[str, str], list[tuple[int, str]]] = defaultdict(list)
    kept: list[tuple[int, Impression]] = []
    without = duplicates = 0
    for rec in iter_records(log):
        ev = rec.event
        if type(ev) is not Impression or (since_ms is not None and ev.timestamp < since_ms):
            continue
        if ev.propensities is None:
            without += 1
            continue
        if ev.request_id in pages:
            duplicates += 1
            continue
        pages[ev.request_id] = (ev.user_id, frozenset(ev.item_ids))
        kept.append((rec.offset, ev))
    if max_impressions is not None and len(kept) > max_impressions:
        kept = kept[-max_impressions:]
        pages = {ev.request_id: pages[ev.request_id] for _, ev in kept}
    for _, ev in kept:
        for item in ev.item_ids:
            shown_at[(ev.user_id, item)].append((ev.timestamp, ev.request_id))
    clicked: set[tuple[str, str]] = set()
    for rec in iter_records(log):
        ev = rec.event
        if type(ev) is Interaction and ev.type in ENGAGED_TYPES and (ev.user_id, ev.item_id) in shown_at:
            slot = _slot(ev, pages, shown_at)
            if slot is not None:
                clicked.add(slot)
    rows = [
        (ev.request_id, ev.user_id, item, pos, p, float((ev.request_id, item) in clicked), at, ev.timestamp)
        for at, ev in kept
        for item, pos, p in zip(ev.item_ids, ev.positions, ev.propensities or (), strict=True)
    ]
    cols = list(zip(*rows, strict=True)) if rows else [()] * 8
    return LoggedSlots(
        np.array(cols[0], dtype=object), np.array(cols[1], dtype=object), np.array(cols[2], dtype=object),
        np.array(cols[3], dtype=np.int64), np.array(cols[4], dtype=np.float64),
        np.array(cols[5], dtype=np.float64), np.array(cols[6], dtype=np.int64),
        np.array(cols[7], dtype=np.int64), len(kept), without, duplicates,
    )  # fmt: skip
