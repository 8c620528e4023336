"""Idempotent appends: which events of a batch were already logged, by ``event_id``.

Every backend keeps a :class:`DedupIndex` of ``id_hash(event_id) -> offset`` and resolves each
batch with :func:`plan_append`. The index stores 64-bit hashes, not the ids: a hit is *verified* by
reading the event id stored at the candidate offset, so dedup stays exact (a hash collision costs
one extra read, never a lost event) while the index stays small.

Memory: 16 bytes per remembered id (int64 hash + int64 offset in two sorted NumPy arrays) — about
80 MB for 5 million ids, twice that for a moment while the newest ids are merged in — plus a dict
of at most :data:`RECENT_MAX` recent ids (~10 MB). ``window=N`` bounds it: an id is then only
remembered while its original is among the last ``N`` events of the log. The default
(``window=None``) is exact for the whole log.

Example:
    >>> index = DedupIndex()
    >>> index.add([id_hash("a"), id_hash("b")], [0, 1])
    >>> index.find([id_hash("b"), id_hash("zz")], end_offset=2)
    {0: [1]}
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from funnel.core.errors import ValidationError
from funnel.core.schema import Impression, Interaction

RECENT_MAX = 65_536
"""Ids kept in the recent dict before they are merged into the sorted arrays."""


def id_hash(event_id: str) -> int:
    """Stable, non-zero signed 64-bit hash of an event id (0 means "no event id")."""
    digest = hashlib.blake2b(event_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True) or 1


class DedupIndex:
    """Multimap of event-id hash -> offsets of the events carrying an id with that hash."""

    def __init__(self, window: int | None = None) -> None:
        if window is not None and window <= 0:
            raise ValidationError("must be a positive number of events", field="dedup_window")
        self.window = window
        self._keys = np.empty(0, dtype=np.int64)
        self._vals = np.empty(0, dtype=np.int64)
        self._recent: dict[int, int] = {}  # newest ids, not merged yet: hash -> offset

    def __len__(self) -> int:
        return len(self._keys) + len(self._recent)

    def add(self, hashes: Sequence[int] | np.ndarray, offsets: Sequence[int] | np.ndarray) -> None:
        """Remember that the event at ``offsets[i]`` carries an id hashing to ``hashes[i]``."""
        if len(hashes) > RECENT_MAX:
            self._merge(np.asarray(hashes, dtype=np.int64), np.asarray(offsets, dtype=np.int64))
            return
        recent = self._recent
        for h, off in zip(hashes, offsets, strict=True):
            if h in recent:  # a second id with this hash (a collision, or a window re-add): rare
                self._merge(np.array([h], dtype=np.int64), np.array([off], dtype=np.int64))
                recent = self._recent  # the merge emptied it into a new dict
            else:
                recent[h] = off
        if len(recent) >= RECENT_MAX:
            self._merge(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64))

    def _merge(self, hashes: np.ndarray, offsets: np.ndarray) -> None:
        if self._recent:
            n = len(self._recent)
            hashes = np.concatenate([np.fromiter(self._recent.keys(), dtype=np.int64, count=n), hashes])
            offsets = np.concatenate([np.fromiter(self._recent.values(), dtype=np.int64, count=n), offsets])
            self._recent = {}
        order = np.argsort(hashes, kind="stable")
        hashes, offsets = hashes[order], offsets[order]
        pos = np.searchsorted(self._keys, hashes, "right")  # equal hashes stay in offset order
        self._keys = np.insert(self._keys, pos, hashes)
        self._vals = np.insert(self._vals, pos, offsets)
        if self.window is not None and len(self._vals):
            keep = self._vals >= int(self._vals.max()) - self.window
            if not keep.all():
                self._keys, self._vals = self._keys[keep], self._vals[keep]

    def find(self, hashes: Sequence[int], end_offset: int) -> dict[int, list[int]]:
        """Candidate offsets by position in ``hashes``, for the hashes that hit (0 never does).

        Inside the window when one is set: only offsets ``>= end_offset - window``.
        """
        out: dict[int, list[int]] = {}
        low = -1 if self.window is None else end_offset - self.window
        if len(self._keys):
            keys = np.asarray(hashes, dtype=np.int64)
            left = np.searchsorted(self._keys, keys, "left")
            right = np.searchsorted(self._keys, keys, "right")
            for i in np.flatnonzero((right > left) & (keys != 0)).tolist():
                out[i] = [v for v in self._vals[left[i] : right[i]].tolist() if v >= low]
        recent = self._recent
        if recent:
            for i, h in enumerate(hashes):
                off = recent.get(h)
                if off is not None and h and off >= low:
                    out.setdefault(i, []).append(off)
        return out


@dataclass(frozen=True, slots=True)
class AppendPlan:
    """How a batch lands in the log: an offset per input, and which inputs are new."""

    offsets: np.ndarray
    """int64 offset of every input event (a duplicate gets its original's)."""
    new: list[int]
    """Positions (in the input) of the events to store, in order; they get consecutive offsets."""
    hashes: list[int]
    """``id_hash`` of each new event's ``event_id`` (0 for none), parallel to ``new``."""


def plan_append(
    events: Sequence[Interaction | Impression],
    index: DedupIndex,
    end_offset: int,
    event_ids_at: Callable[[list[int]], dict[int, str | None]],
) -> AppendPlan:
    """Resolve duplicates of a batch against itself and ``index``; validates the event types.

    ``event_ids_at(offsets)`` returns the event ids stored at sorted existing offsets; it is
    called once per batch, and only to confirm hash hits (so a retried batch costs one read).
    """
    hashes: list[int] = []
    for row, ev in enumerate(events, start=1):
        kind = type(ev)
        if kind is Interaction:
            eid = ev.event_id  # type: ignore[union-attr]
            if eid is None:
                hashes.append(0)
            elif isinstance(eid, str):
                hashes.append(id_hash(eid))
            else:
                raise ValidationError("must be a string", field="event_id", row=row)
        elif kind is Impression:
            hashes.append(0)
        else:
            raise ValidationError(
                f"must be an Interaction or an Impression, got {kind.__name__}", field="events", row=row
            )
    found = index.find(hashes, end_offset) if len(index) else {}
    stored = event_ids_at(sorted({c for cands in found.values() for c in cands})) if found else {}
    offsets: list[int] = []
    new: list[int] = []
    new_hashes: list[int] = []
    in_batch: dict[str, int] = {}
    nxt = end_offset
    for i, h in enumerate(hashes):
        if h:
            eid = events[i].event_id  # type: ignore[union-attr]
            original = in_batch.get(eid)  # type: ignore[arg-type]
            if original is None and i in found:
                original = next((c for c in found[i] if stored.get(c) == eid), None)
            if original is not None:
                offsets.append(original)
                continue
            in_batch[eid] = nxt  # type: ignore[index]
        offsets.append(nxt)
        new.append(i)
        new_hashes.append(h)
        nxt += 1
    return AppendPlan(np.array(offsets, dtype=np.int64), new, new_hashes)
