"""``MemoryOnlineStore``: the in-process online store — the test double and the embedded default.

It is the reference semantics every backend matches (the contract suite runs it and Redis alike):
one hash of ``field -> float`` per key; a key written with ``ttl_s`` expires ``ttl_s`` seconds
after that write (enforced on read against an injectable ``clock``); a write without ``ttl_s``
leaves an increment's key expiry as it was and clears it on ``set_many`` (a replace); ``apply``
is atomic and idempotent per event under one lock. The validation helpers here are shared with
:mod:`funnel.features.online.redis_store` so both backends reject the same input.

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

from funnel.core.errors import UnavailableError, ValidationError
from funnel.features.online.protocol import KEY_FORMAT_VERSION, Increment

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


class MemoryOnlineStore:
    """An :class:`~funnel.features.online.protocol.OnlineStore` in Python dicts. Thread-safe.

    ``clock`` returns seconds (default :func:`time.monotonic`); tests inject a fake one to check
    TTLs without sleeping.
    """

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

    def close(self) -> None:
        """Mark the store closed; later data-plane calls raise ``UnavailableError``. Idempotent."""
        self._closed = True
