"""Time-bucketed windows: the ONE definition of "the events inside window w at time t".

Both feature paths use this module, so a feature read online at ``t`` equals the offline value
at ``t`` exactly.

Semantics (epoch ms, UTC). A window ``w`` has a bucket size ``b`` and a bucket count ``n``; the
bucket of a timestamp ``ts`` starts at ``ts // b * b``. At time ``t`` the window holds the ``n``
most recent buckets *including the current, partial one*:

* an event at ``ts`` counts at ``t`` iff ``ts < t`` (strictly before ``t``, exact to the
  millisecond) and ``bucket_start(ts) >= lower_bound(t) = bucket_start(t) - (n - 1) * b``;
* so the window covers between ``(n - 1) * b`` and ``n * b`` of time before ``t``;
* ``lifetime`` holds every event with ``ts < t`` (one bucket, start 0).

================  ===========  =====  ==============================
window            bucket       n      covers
================  ===========  =====  ==============================
``1h``            10 min       6      50–60 min
``24h``           3 h          8      21–24 h
``7d``            1 day        7      6–7 days
``30d``           1 day        30     29–30 days
``lifetime``      —            1      everything before t
================  ===========  =====  ==============================

Offline (DuckDB) applies the two conditions literally (:meth:`Window.sql_lower_bound`). Online,
each event adds its amount to hash field ``"<counter>|<sub>|<res>:<bucket_start>"`` once per
*resolution* (bucket size: ``10m``, ``3h``, ``1d``, ``L``; ``7d`` and ``30d`` share the daily
buckets); a read at ``t`` sums, per window, the fields of its resolution whose bucket lies in
``[lower_bound(t), bucket_start(t)]``. Buckets after
``t``'s are ignored; events inside ``t``'s own bucket count when the store has applied them, so the
two sides agree whenever the store has applied exactly the events before ``t`` — the live
situation up to ingestion lag, and what the skew test replays. Expired buckets are never read; key
TTLs (window span + one bucket + a day) drop idle entities and :func:`stale_fields` lists the
fields a pruning pass may delete.

Example:
    >>> w = WINDOWS["1h"]
    >>> t = 1_767_225_600_000 + 25 * MINUTE  # 00:25
    >>> w.bucket_start(t) - 1_767_225_600_000, w.lower_bound(t) - 1_767_225_600_000
    (1200000, -1800000)
    >>> w.contains(t - 1, t), w.contains(t, t), w.contains(t - 56 * MINUTE, t)
    (True, False, False)
    >>> field_name("click", "", "10m", 1_767_225_600_000)
    'click||10m:1767225600000'
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

MINUTE = 60_000
"""One minute in milliseconds."""
HOUR = 60 * MINUTE
"""One hour in milliseconds."""
DAY = 24 * HOUR
"""One day in milliseconds."""
LIFETIME = "lifetime"
"""The name of the unbounded window."""


@dataclass(frozen=True, slots=True)
class Window:
    """A time-bucketed window: ``n_buckets`` buckets of ``bucket_ms`` (``0, 1`` for lifetime).

    ``res`` names the bucket size; windows with the same ``res`` share their online fields.
    """

    name: str
    bucket_ms: int
    n_buckets: int
    res: str

    @property
    def is_lifetime(self) -> bool:
        """Whether this is the unbounded ``lifetime`` window."""
        return self.bucket_ms == 0

    @property
    def span_ms(self) -> int:
        """The longest stretch of time the window can cover (0 for lifetime)."""
        return self.bucket_ms * self.n_buckets

    def bucket_start(self, ts: int) -> int:
        """Start of the bucket holding ``ts`` (0 for lifetime)."""
        return 0 if self.bucket_ms == 0 else ts // self.bucket_ms * self.bucket_ms

    def lower_bound(self, t: int) -> int:
        """The first bucket start inside the window at ``t`` (0 for lifetime)."""
        if self.bucket_ms == 0:
            return 0
        return self.bucket_start(t) - (self.n_buckets - 1) * self.bucket_ms

    def contains(self, ts: int, t: int) -> bool:
        """Whether an event at ``ts`` counts in this window at time ``t`` (the reference rule)."""
        return ts < t and (self.bucket_ms == 0 or ts >= self.lower_bound(t))

    def bucket_in_window(self, bucket_start: int, t: int) -> bool:
        """Whether a stored bucket counts online at ``t``: ``lower_bound(t) <= start <= bucket(t)``."""
        if self.bucket_ms == 0:
            return True
        return self.lower_bound(t) <= bucket_start <= self.bucket_start(t)

    def buckets(self, t: int) -> list[int]:
        """The bucket starts inside the window at ``t``, oldest first (``[0]`` for lifetime)."""
        if self.bucket_ms == 0:
            return [0]
        lo = self.lower_bound(t)
        return [lo + k * self.bucket_ms for k in range(self.n_buckets)]

    def sql_lower_bound(self, t_col: str) -> str:
        """DuckDB expression of :meth:`lower_bound` for a BIGINT epoch-ms column ``t_col``."""
        if self.bucket_ms == 0:
            return "0"
        b = self.bucket_ms
        return f"(({t_col} // {b}) * {b} - {(self.n_buckets - 1) * b})"

    def ttl_s(self) -> int | None:
        """Key TTL that keeps every bucket this window can still read (None for lifetime)."""
        if self.bucket_ms == 0:
            return None
        return (self.span_ms + self.bucket_ms + DAY) // 1000


WINDOWS: dict[str, Window] = {
    "1h": Window("1h", 10 * MINUTE, 6, "10m"),
    "24h": Window("24h", 3 * HOUR, 8, "3h"),
    "7d": Window("7d", DAY, 7, "1d"),
    "30d": Window("30d", DAY, 30, "1d"),
    LIFETIME: Window(LIFETIME, 0, 1, "L"),
}
"""The windows features may use, by name."""
RES_WINDOWS: dict[str, tuple[Window, ...]] = {
    r: tuple(w for w in WINDOWS.values() if w.res == r)
    for r in dict.fromkeys(w.res for w in WINDOWS.values())
}
"""The windows reading each resolution's fields."""


def field_name(counter: str, sub: str, res: str, bucket_start: int) -> str:
    """The online hash field of one bucket: ``"<counter>|<sub>|<res>:<bucket_start>"``."""
    return f"{counter}|{sub}|{res}:{bucket_start}"


@functools.lru_cache(maxsize=1 << 18)
def parse_field(field: str) -> tuple[str, str, str, int] | None:
    """``(counter, sub, res, bucket_start)`` of a bucket field; None for any other field (memoised).

    Example:
        >>> parse_field("click|sports|1d:1767139200000")
        ('click', 'sports', '1d', 1767139200000)
        >>> parse_field("published_at") is None
        True
    """
    counter, sep, rest = field.partition("|")
    if not sep:
        return None
    sub, sep, rest = rest.rpartition("|")
    res, sep2, start = rest.partition(":")
    if not sep or not sep2 or res not in RES_WINDOWS:
        return None
    try:
        return counter, sub, res, int(start)
    except ValueError:
        return None


def window_sums(
    hashes: dict[str, dict[str, float]], t: int, out: dict | None = None
) -> dict[tuple[str, str, str, str], float]:
    """Sum the bucket fields of ``{group: hash}`` that lie inside their window at ``t``.

    Returns ``{(group, counter, sub, window): value}`` — the mapping the offline path builds.

    Example:
        >>> h = {"click||10m:0": 2.0, "click||L:0": 5.0, "note": 1.0}
        >>> window_sums({"act": h}, 30 * MINUTE)
        {('act', 'click', '', '1h'): 2.0, ('act', 'click', '', 'lifetime'): 5.0}
    """
    out = {} if out is None else out
    global _MEMO
    epoch = tuple(w.bucket_start(t) for w in WINDOWS.values())  # fixes every window's bounds
    memo_epoch, memo = _MEMO  # one read: another thread may swap in another epoch's memo
    if memo_epoch != epoch or sum(map(len, memo.values())) > 200_000:
        memo = {}
        _MEMO = (epoch, memo)
    for group, h in hashes.items():
        by_field = memo.get(group)
        if by_field is None:
            by_field = memo.setdefault(group, {})
        get = by_field.get
        for field, value in h.items():
            keys = get(field)
            if keys is None:
                keys = by_field[field] = _window_keys(group, field, t)
            for key in keys:
                out[key] = out.get(key, 0.0) + value
    return out


_MEMO: tuple[tuple[int, ...], dict] = ((), {})
"""``(epoch, {group: {field: window_sums keys}})``: the bucket starts at ``t`` fix every window."""


def _window_keys(group: str, field: str, t: int) -> tuple[tuple[str, str, str, str], ...]:
    """The ``(group, counter, sub, window)`` sums a bucket field adds to at ``t`` (none if stale)."""
    parsed = parse_field(field)
    if parsed is None:
        return ()
    counter, sub, res, start = parsed
    inside = [w.name for w in RES_WINDOWS[res] if w.lower_bound(t) <= start <= w.bucket_start(t)]
    return tuple((group, counter, sub, name) for name in inside)


def stale_fields(h: dict[str, float], t: int) -> list[str]:
    """Bucket fields of ``h`` that no window can read at ``t`` or later (safe to delete)."""
    out = []
    for field in h:
        parsed = parse_field(field)
        if parsed is not None and all(parsed[3] < w.lower_bound(t) for w in RES_WINDOWS[parsed[2]]):
            out.append(field)
    return out
