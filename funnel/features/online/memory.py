"""``MemoryOnlineStore``: the in-process online store — the test double and the embedded default.

It is the reference semantics every backend matches (the contract suite runs it and Redis alike):
one hash of ``field -> float`` per key; a key written with ``ttl_s`` expires ``ttl_s`` seconds
after that write (enforced on read against an injectable ``clock``); a write without ``ttl_s``
leaves an increment's key expiry as it was and clears it on ``set_many`` (a replace); ``apply``
is atomic and idempotent per event under one lock. The validation helpers here are shared with
:mod:`funnel.features.online.redis_store` so both backends reject the same input. It declares the
:data:`~funnel.features.online.protocol.FAST_PATH` capability (``read_fields``, ``apply_sums``).

Example:
    >>> from funnel.features.online.protocol import Increment, feature_key
    >>> now = [0.0]
    >>> store = MemoryOnlineStore(clock=lambda: now[0])
    >>> key = feature_key("user", "42", "activity")
    >>> store.apply([("e1", [Increment(key, "clicks", 1.0, ttl_s=60)])], dedup_ttl_s=3600)
    1
    >>> store.apply([("e1", [Increment(key, "clicks", 1.0, ttl_s=60)])], dedup_ttl_s=3600)
    0
    >>> store.get_many([key, feature_key("user", "7", "activity")])
    [{'clicks': 1.0}, {}]
    >>> now[0] = 61.0
    >>> store.get_many([key])
    [{}]
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from itertools import repeat

import numpy as np

from funnel.core.errors import UnavailableError
from funnel.features.online.checks import (  # re-exported: the stores' shared validation
    KEY_PREFIX,
    check_batch,
    check_fields,
    check_key,
    check_keys,
    check_rows,
    check_sums,
    check_ttl,
    check_value,
)
from funnel.features.online.protocol import FAST_PATH, Increment, KeySums

__all__ = [
    "KEY_PREFIX",
    "MemoryOnlineStore",
    "check_batch",
    "check_fields",
    "check_key",
    "check_keys",
    "check_rows",
    "check_sums",
    "check_ttl",
    "check_value",
]


class MemoryOnlineStore:
    """An :class:`~funnel.features.online.protocol.OnlineStore` in Python dicts. Thread-safe.

    ``clock`` returns seconds (default :func:`time.monotonic`); tests inject a fake one to check
    TTLs without sleeping.
    """

    capabilities = frozenset({FAST_PATH})
    """Declared optional capabilities (see :mod:`funnel.features.online.protocol`)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._hashes: dict[str, dict[str, float]] = {}
        self._expires: dict[str, float] = {}  # key -> clock time it expires at
        self._dedup: dict[str, float] = {}  # event id -> clock time it is forgotten at
        self._dedup_purge_at = 1024
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        return f"MemoryOnlineStore(keys={len(self._hashes)})"

    # control plane
    def create(self) -> None:
        """Nothing to provision in memory; (re)opens a closed store for symmetry with Redis."""
        self._closed = False

    def teardown(self) -> None:
        """Drop every key and every remembered event id."""
        with self._lock:
            self._hashes.clear()
            self._expires.clear()
            self._dedup.clear()

    # data plane
    def _check_open(self) -> None:
        if self._closed:
            raise UnavailableError("the online store is closed")

    def _live(self, key: str, now: float) -> dict[str, float] | None:
        expires = self._expires.get(key)
        if expires is not None and expires <= now:
            del self._expires[key]
            self._hashes.pop(key, None)
            return None
        return self._hashes.get(key)

    def get_many(self, keys: Sequence[str]) -> list[dict[str, float]]:
        """The hash of every key, in order; ``{}`` for a missing or expired key."""
        for key in keys:
            check_key(key)
        with self._lock:
            self._check_open()
            now = self._clock()
            return [dict(self._live(key, now) or {}) for key in keys]

    def read_fields(self, keys: Sequence[str], fields: Sequence[str]) -> np.ndarray:
        """``out[i, j]`` = field ``fields[j]`` of ``keys[i]`` (0.0 if missing or expired); no copies.

        A hash smaller than the field list scatters its own entries (one lookup per entry, not
        per field): the open item buckets serving reads are mostly small.
        """
        check_keys(keys)
        check_fields(fields)
        out = np.zeros((len(keys), len(fields)))
        zero, n = repeat(0.0), len(fields)
        col: dict[str, int] | None = None  # field -> its last column
        with self._lock:
            self._check_open()
            now = self._clock()
            for i, key in enumerate(keys):
                h = self._live(key, now)
                if not h:
                    continue
                if len(h) >= n:
                    out[i] = np.fromiter(map(h.get, fields, zero), np.float64, n)
                    continue
                if col is None:
                    col = dict(zip(fields, range(n), strict=True))
                hit = [(col[f], v) for f, v in h.items() if f in col]
                if hit:
                    at, values = zip(*hit, strict=True)
                    out[i, list(at)] = values
        if col is not None and len(col) < n:  # a repeated field: its last column holds the value
            out = out[:, [col[f] for f in fields]]
        return out

    def read_many(
        self, keys: Sequence[str], field_keys: Sequence[str], fields: Sequence[str]
    ) -> tuple[list[dict[str, float]], np.ndarray]:
        """``(get_many(keys), read_fields(field_keys, fields))``."""
        return self.get_many(keys), self.read_fields(field_keys, fields)

    def set_many(self, rows: Mapping[str, Mapping[str, float]], ttl_s: int | None = None) -> None:
        """Replace the hash of every key in ``rows`` (an empty mapping deletes the key)."""
        clean, ttl = check_rows(rows), check_ttl(ttl_s)
        with self._lock:
            self._check_open()
            now = self._clock()
            for key, fields in clean.items():
                self._expires.pop(key, None)
                if not fields:
                    self._hashes.pop(key, None)
                    continue
                self._hashes[key] = fields
                if ttl is not None:
                    self._expires[key] = now + ttl

    def apply(self, batch: Sequence[tuple[str, Sequence[Increment]]], dedup_ttl_s: int) -> int:
        """Apply each ``(event_id, increments)`` whose id was not seen in ``dedup_ttl_s`` seconds."""
        check_batch(batch)
        dedup_ttl = check_ttl(dedup_ttl_s, "dedup_ttl_s", optional=False)
        assert dedup_ttl is not None
        applied = 0
        with self._lock:
            self._check_open()
            now = self._clock()
            for event_id, increments in batch:
                forget_at = self._dedup.get(event_id)
                if forget_at is not None and forget_at > now:
                    continue
                self._dedup[event_id] = now + dedup_ttl
                for inc in increments:
                    fields = self._live(inc.key, now)
                    if fields is None:
                        fields = self._hashes[inc.key] = {}
                    fields[inc.field] = fields.get(inc.field, 0.0) + float(inc.amount)
                    if inc.ttl_s is not None:
                        self._expires[inc.key] = now + inc.ttl_s
                applied += 1
            if len(self._dedup) >= self._dedup_purge_at:
                self._dedup = {e: t for e, t in self._dedup.items() if t > now}
                self._dedup_purge_at = max(1024, 2 * len(self._dedup))
        return applied

    def apply_sums(self, event_ids: Sequence[str], sums: KeySums, dedup_ttl_s: int) -> int | None:
        """Apply ``sums`` for ``event_ids`` if all are new (else None, nothing changed); atomic."""
        plain = check_sums(event_ids, sums)
        dedup_ttl = check_ttl(dedup_ttl_s, "dedup_ttl_s", optional=False)
        assert dedup_ttl is not None
        with self._lock:
            self._check_open()
            now, dedup = self._clock(), self._dedup
            if len(set(event_ids)) != len(event_ids):
                return None
            for event_id in event_ids:
                forget_at = dedup.get(event_id)
                if forget_at is not None and forget_at > now:
                    return None
            dedup.update(dict.fromkeys(event_ids, now + dedup_ttl))
            hashes, expires = self._hashes, self._expires
            for key, (ttl, fields, amounts) in sums.items():
                at = expires.get(key)
                h = self._live(key, now) if at is not None and at <= now else hashes.get(key)
                if h is None:
                    h = hashes[key] = {}
                get = h.get
                for name, amount in zip(fields, amounts if plain else map(float, amounts), strict=True):
                    h[name] = get(name, 0.0) + amount
                if ttl is not None:
                    expires[key] = now + ttl
            if len(dedup) >= self._dedup_purge_at:
                self._dedup = {e: t for e, t in dedup.items() if t > now}
                self._dedup_purge_at = max(1024, 2 * len(self._dedup))
        return len(event_ids)

    def close(self) -> None:
        """Mark the store closed; later data-plane calls raise ``UnavailableError``. Idempotent."""
        self._closed = True
