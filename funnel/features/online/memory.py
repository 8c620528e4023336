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

import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from itertools import chain, repeat

import numpy as np

from funnel.core.errors import UnavailableError, ValidationError
from funnel.features.online.protocol import FAST_PATH, KEY_FORMAT_VERSION, Increment, KeySums

KEY_PREFIX = f"fs{KEY_FORMAT_VERSION}:"
"""Every key the stores accept starts with this (it is what :func:`feature_key` builds)."""


def check_key(key: object, field: str = "keys") -> str:
    """Return ``key`` if it is a current-format feature key, else raise ``ValidationError``."""
    if not isinstance(key, str) or not key.startswith(KEY_PREFIX):
        raise ValidationError(
            f"must be a key built by feature_key() (starting with {KEY_PREFIX!r}), got {key!r}", field=field
        )
    return key


def check_ttl(ttl_s: object, field: str = "ttl_s", optional: bool = True) -> int | None:
    """Return ``ttl_s`` if it is a positive int (or ``None`` when ``optional``); else raise."""
    if ttl_s is None and optional:
        return None
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int) or ttl_s <= 0:
        raise ValidationError(f"must be a positive number of seconds, got {ttl_s!r}", field=field)
    return ttl_s


def check_value(value: object, field: str) -> float:
    """Return ``value`` as a finite float, else raise ``ValidationError``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError(f"must be a finite number, got {value!r}", field=field)
    return float(value)


def check_rows(rows: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Validate ``set_many`` rows: feature keys, string fields, finite values."""
    out: dict[str, dict[str, float]] = {}
    for key, fields in rows.items():
        check_key(key, "rows")
        out[key] = {}
        for name, value in fields.items():
            if not isinstance(name, str):
                raise ValidationError(f"field names must be strings, got {name!r}", field="rows")
            out[key][name] = check_value(value, f"rows[{key!r}][{name!r}]")
    return out


def check_batch(batch: Sequence[tuple[str, Sequence[Increment]]]) -> None:
    """Validate an ``apply`` batch: non-empty string event ids and well-formed increments."""
    for row, (event_id, increments) in enumerate(batch, start=1):
        if not isinstance(event_id, str) or not event_id:
            raise ValidationError("must be a non-empty string", field="event_id", row=row)
        for inc in increments:
            if not isinstance(inc, Increment):
                raise ValidationError(
                    f"must be an Increment, got {type(inc).__name__}", field="batch", row=row
                )
            check_key(inc.key, "key")
            if not isinstance(inc.field, str):
                raise ValidationError(f"must be a string, got {inc.field!r}", field="field", row=row)
            check_value(inc.amount, "amount")
            check_ttl(inc.ttl_s)


def check_keys(keys: Sequence[str]) -> None:
    """``check_key`` every key (one fast pass; the slow one only to name a bad key)."""
    prefix = KEY_PREFIX
    if not all(type(k) is str and k.startswith(prefix) for k in keys):
        for key in keys:
            check_key(key)


def check_fields(fields: Sequence[str], what: str = "fields") -> None:
    """Raise ``ValidationError`` unless every field name is a string."""
    if not all(type(f) is str for f in fields) and not all(isinstance(f, str) for f in fields):
        raise ValidationError("field names must be strings", field=what)


def check_sums(event_ids: Sequence[str], sums: KeySums) -> None:
    """Validate an ``apply_sums`` call as :func:`check_batch` validates ``apply``'s increments."""
    for row, event_id in enumerate(event_ids, start=1):
        if not isinstance(event_id, str) or not event_id:
            raise ValidationError("must be a non-empty string", field="event_id", row=row)
    check_keys(list(sums))
    amounts: list[list[float]] = []
    for ttl, fields, values in sums.values():
        check_ttl(ttl)
        if len(fields) != len(values):
            raise ValidationError("fields and amounts differ in length", field="sums")
        check_fields(fields, "field")
        amounts.append(values)
    flat = list(chain.from_iterable(amounts))
    for value in flat:
        if value.__class__ is not float:
            check_value(value, "amount")
    if flat and not np.isfinite(np.asarray(flat, dtype=np.float64)).all():
        for value in flat:
            check_value(value, "amount")


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
        """``out[i, j]`` = field ``fields[j]`` of ``keys[i]`` (0.0 if missing or expired); no copies."""
        check_keys(keys)
        check_fields(fields)
        fields, flat, empty, zero = list(fields), [], {}, repeat(0.0)
        with self._lock:
            self._check_open()
            now, hashes, expires = self._clock(), self._hashes, self._expires
            for key in keys:
                at = expires.get(key)
                h = self._live(key, now) if at is not None and at <= now else hashes.get(key)
                flat.extend(map((h or empty).get, fields, zero))
        return np.array(flat, dtype=np.float64).reshape(len(keys), len(fields))

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
        check_sums(event_ids, sums)
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
            for key, (ttl, fields, amounts) in sums.items():
                h = self._live(key, now)
                if h is None:
                    h = self._hashes[key] = {}
                for name, amount in zip(fields, amounts, strict=True):
                    h[name] = h.get(name, 0.0) + float(amount)
                if ttl is not None:
                    self._expires[key] = now + ttl
            if len(dedup) >= self._dedup_purge_at:
                self._dedup = {e: t for e, t in dedup.items() if t > now}
                self._dedup_purge_at = max(1024, 2 * len(self._dedup))
        return len(event_ids)

    def close(self) -> None:
        """Mark the store closed; later data-plane calls raise ``UnavailableError``. Idempotent."""
        self._closed = True
