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
    [[1], []]
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
        self._recent: dict[int, list[int]] = {}
        self._n_recent = 0

    def __len__(self) -> int:
        return len(self._keys) + self._n_recent

    def add(self, hashes: Sequence[int] | np.ndarray, offsets: Sequence[int] | np.ndarray) -> None:
        """Remember that the event at ``offsets[i]`` carries an id hashing to ``hashes[i]``."""
        hashes, offsets = np.asarray(hashes, dtype=np.int64), np.asarray(offsets, dtype=np.int64)
        if len(hashes) > RECENT_MAX:
            self._merge(hashes, offsets)
            return
        for h, off in zip(hashes.tolist(), offsets.tolist(), strict=True):
            self._recent.setdefault(h, []).append(off)
        self._n_recent += len(hashes)
        if self._n_recent >= RECENT_MAX:
            self._merge(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64))

    def _merge(self, hashes: np.ndarray, offsets: np.ndarray) -> None:
        if self._recent:
            pairs = [(h, off) for h, offs in self._recent.items() for off in offs]
            more = np.array(pairs, dtype=np.int64).reshape(-1, 2)
            hashes = np.concatenate([hashes, more[:, 0]])
            offsets = np.concatenate([offsets, more[:, 1]])
            self._recent, self._n_recent = {}, 0
        order = np.argsort(hashes, kind="stable")
        hashes, offsets = hashes[order], offsets[order]
        pos = np.searchsorted(self._keys, hashes)
        self._keys = np.insert(self._keys, pos, hashes)
        self._vals = np.insert(self._vals, pos, offsets)
        if self.window is not None and len(self._vals):
            keep = self._vals >= int(self._vals.max()) - self.window
            if not keep.all():
                self._keys, self._vals = self._keys[keep], self._vals[keep]

    def find(self, hashes: Sequence[int] | np.ndarray, end_offset: int) -> list[list[int]]:
        """Candidate offsets for each hash (inside the window when one is set); 0 never matches."""
        hashes = np.asarray(hashes, dtype=np.int64)
        out: list[list[int]] = [[] for _ in range(len(hashes))]
        low = -1 if self.window is None else end_offset - self.window
        if len(self._keys):
            left = np.searchsorted(self._keys, hashes, "left")
            right = np.searchsorted(self._keys, hashes, "right")
            for i in np.flatnonzero((right > left) & (hashes != 0)).tolist():
                out[i] = [v for v in self._vals[left[i] : right[i]].tolist() if v >= low]
        if self._recent:
            for i, h in enumerate(hashes.tolist()):
                offs = self._recent.get(h)
                if offs:
                    out[i].extend(v for v in offs if v >= low)
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
    event_id_at: Callable[[int], str | None],
) -> AppendPlan:
    """Resolve duplicates of a batch against itself and ``index``; validates the event types.

    ``event_id_at(offset)`` returns the event id stored at an existing offset; it is only called
    to confirm a hash hit.
    """
    hashes: list[int] = []
    for row, ev in enumerate(events, start=1):
        if type(ev) is Interaction and ev.event_id is not None:
            if not isinstance(ev.event_id, str):
                raise ValidationError("must be a string", field="event_id", row=row)
            hashes.append(id_hash(ev.event_id))
        elif type(ev) is Interaction or type(ev) is Impression:
            hashes.append(0)
        else:
            raise ValidationError(
                f"must be an Interaction or an Impression, got {type(ev).__name__}", field="events", row=row
            )
    candidates = index.find(hashes, end_offset) if len(index) else None
    offsets = np.empty(len(events), dtype=np.int64)
    new: list[int] = []
    new_hashes: list[int] = []
    in_batch: dict[str, int] = {}
    nxt = end_offset
    for i, h in enumerate(hashes):
        if h:
            eid = events[i].event_id  # type: ignore[union-attr]
            original = in_batch.get(eid)  # type: ignore[arg-type]
            if original is None and candidates is not None:
                original = next((c for c in candidates[i] if event_id_at(c) == eid), None)
            if original is not None:
                offsets[i] = original
                continue
            in_batch[eid] = nxt  # type: ignore[index]
        offsets[i] = nxt
        new.append(i)
        new_hashes.append(h)
        nxt += 1
    return AppendPlan(offsets, new, new_hashes)
