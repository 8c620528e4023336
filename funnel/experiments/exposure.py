"""Per-user rows of one experiment, read from the event log: exposure, clicks, engagement, negatives.

Two passes over the log (:func:`exposure_rows`):

1. **Impressions** stamped with the experiment's name (``Impression.experiment``) make the users:
   a user's arm is the arm of their first such impression. Impressions of an arm the experiment
   does not have, or of another arm than the user's first, are dropped and counted
   (``dropped_impressions``: a client echoing the wrong arm shows there); an impression whose
   ``request_id`` was logged before (a client retry) counts once (``duplicate_impressions``).
2. **Interactions** of those users:

   * a *click* is an impressed slot (request, item) with an engaged interaction on it
     (:data:`ENGAGED_TYPES`: every positive type but ``view``, which is what an impression is).
     The interaction's ``request_id`` names the page; without one, the latest page of the
     experiment that showed the user that item before the interaction does. Clicks count slots,
     so ``clicks <= impressions`` per user;
   * *engagement* is the user's number of engaged interactions on any item, and *negatives* their
     ``skip``, ``not_interested`` and ``dislike`` events, from their first exposure until the
     experiment stopped (while it runs: until the end of the log).

Example:
    >>> from funnel.core.schema import Impression, Interaction
    >>> from funnel.events.memory_log import MemoryEventLog
    >>> from funnel.experiments.assignment import Arm, Experiment
    >>> log, t = MemoryEventLog(), 1_700_000_000_000
    >>> _ = log.append([
    ...     Impression("r1", "u1", ("a", "b"), (0, 1), t, experiment="e", arm="A"),
    ...     Impression("r2", "u2", ("a", "c"), (0, 1), t, experiment="e", arm="B"),
    ...     Interaction("u2", "c", "click", t + 5, request_id="r2"),
    ...     Interaction("u2", "c", "like", t + 9),
    ...     Interaction("u1", "b", "skip", t + 7)])
    >>> rows = exposure_rows(log, Experiment("e", "s", (Arm("A"), Arm("B"))))
    >>> rows.users, rows.arm.tolist(), rows.clicks.tolist(), rows.engagement.tolist(), rows.negatives.tolist()
    (['u1', 'u2'], ['A', 'B'], [0, 1], [0, 2], [1, 0])
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from funnel.core.schema import EVENT_TYPES, NEGATIVE_TYPES, Impression, Interaction
from funnel.events.protocol import EventLog, iter_records
from funnel.experiments.assignment import Experiment

ENGAGED_TYPES = frozenset(t for t in EVENT_TYPES if t not in NEGATIVE_TYPES and t != "view")
"""Interaction types that count as a click on an impressed item, and as engagement."""


@dataclass(frozen=True)
class ExposureRows:
    """One row per exposed user, in order of first exposure, and what was left out.

    Attributes:
        users: User ids. arm: Arm name per user. impressions: Slots shown per user.
        clicks: Clicked slots per user. engagement: Engaged interactions per user (any item).
        negatives: Negative interactions per user. items: Per arm name, the distinct items it showed.
        dropped_impressions: Impressions of an unknown arm or of a user's second arm.
        duplicate_impressions: Impressions whose ``request_id`` was logged before.
    """

    users: list[str]
    arm: np.ndarray
    impressions: np.ndarray
    clicks: np.ndarray
    engagement: np.ndarray
    negatives: np.ndarray
    items: dict[str, set[str]]
    dropped_impressions: int = 0
    duplicate_impressions: int = 0


def exposure_rows(log: EventLog, experiment: Experiment, stopped_ms: int | None = None) -> ExposureRows:
    """The per-user rows of ``experiment`` in ``log`` (see the module docstring).

    ``stopped_ms``: when the experiment stopped; engagement and negatives after it are not counted.
    """
    arms = set(experiment.arm_names)
    user_arm: dict[str, str] = {}
    first_ms: dict[str, int] = {}
    shown_n: dict[str, int] = defaultdict(int)
    pages: dict[str, tuple[str, frozenset[str]]] = {}
    shown_at: dict[tuple[str, str], list[tuple[int, str]]] = defaultdict(list)
    items: dict[str, set[str]] = {a: set() for a in experiment.arm_names}
    dropped = duplicates = 0
    for rec in iter_records(log):
        ev = rec.event
        if type(ev) is not Impression or ev.experiment != experiment.name:
            continue
        if ev.arm not in arms or user_arm.setdefault(ev.user_id, ev.arm) != ev.arm:
            dropped += 1
            continue
        if ev.request_id in pages:
            duplicates += 1
            continue
        user = ev.user_id
        first_ms[user] = min(first_ms.get(user, ev.timestamp), ev.timestamp)
        shown_n[user] += len(ev.item_ids)
        pages[ev.request_id] = (user, frozenset(ev.item_ids))
        for item in ev.item_ids:
            shown_at[(user, item)].append((ev.timestamp, ev.request_id))
        items[ev.arm].update(ev.item_ids)
    users = [u for u in user_arm if u in first_ms]  # in order of first exposure
    clicked: dict[str, set[tuple[str, str]]] = defaultdict(set)
    engaged: dict[str, int] = defaultdict(int)
    negative: dict[str, int] = defaultdict(int)
    end = stopped_ms if stopped_ms is not None else np.iinfo(np.int64).max
    for rec in iter_records(log):
        ev = rec.event
        if type(ev) is not Interaction or ev.user_id not in first_ms:
            continue
        user, in_window = ev.user_id, first_ms[ev.user_id] <= ev.timestamp <= end
        if ev.type in NEGATIVE_TYPES:
            negative[user] += in_window
        elif ev.type in ENGAGED_TYPES:
            engaged[user] += in_window
            slot = _slot(ev, pages, shown_at)
            if slot is not None:
                clicked[user].add(slot)
    return ExposureRows(
        users,
        np.array([user_arm[u] for u in users], dtype=object).astype(str),
        np.array([shown_n[u] for u in users], dtype=np.int64),
        np.array([len(clicked[u]) for u in users], dtype=np.int64),
        np.array([engaged[u] for u in users], dtype=np.int64),
        np.array([negative[u] for u in users], dtype=np.int64),
        items,
        dropped,
        duplicates,
    )


def _slot(
    ev: Interaction,
    pages: dict[str, tuple[str, frozenset[str]]],
    shown_at: dict[tuple[str, str], list[tuple[int, str]]],
) -> tuple[str, str] | None:
    """The impressed slot ``(request id, item)`` an engaged interaction clicked, if any."""
    page = pages.get(ev.request_id) if ev.request_id is not None else None
    if page is not None and page[0] == ev.user_id and ev.item_id in page[1]:
        return ev.request_id, ev.item_id  # type: ignore[return-value]
    earlier = [(ms, rid) for ms, rid in shown_at.get((ev.user_id, ev.item_id), ()) if ms <= ev.timestamp]
    return (max(earlier)[1], ev.item_id) if earlier else None
