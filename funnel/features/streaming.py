"""The streaming path: event log -> bucketed online counters, at least once, idempotently.

:class:`StreamingUpdater` reads the log from its group's committed offset, turns every event
into :class:`~funnel.features.online.protocol.Increment` s (one per counter, window and sub-entity,
into the bucket of the event's timestamp; see :mod:`funnel.features.windows`), applies them with
``store.apply([(event_id, increments), ...], dedup_ttl_s)`` and only then commits the next
offset. A store declaring the ``FAST_PATH`` capability gets each chunk of events merged per key
instead (:func:`~funnel.features.batch_sums.batch_sums`, one ``apply_sums`` call, same result);
when some event of the chunk was already applied, the chunk goes through ``apply``. A crash
between apply and commit replays the batch; the store skips event ids it already applied, so
nothing is counted twice. Events without an ``event_id`` (impressions, anonymous
interactions) get ``"@<log_name>:<offset>"``, the same on every replay.

Key layout (``feature_key(entity, id, group)``): user ``act`` (windowed counters), ``life``
(lifetime), ``cat`` / ``creator`` / ``items`` (user x category / creator / item counters, sub =
the category, creator or item id), ``recent`` (fields ``"<item>|<ts>"``, for last-N); item
``meta`` (catalogue: ``published_at``, ``cat|<c>``, ``creator|<id>``). Item counters are
bucket-major: one hash per counter and bucket, ``bucket_key(group, "<counter>|<res>:<start>")``,
field = item id, expiring :func:`bucket_ttls` after its last write (so a closed bucket, no longer
written, expires by itself), and read for many items at once by serving.

Example:
    >>> from funnel.core.schema import Interaction
    >>> from funnel.events.memory_log import MemoryEventLog
    >>> from funnel.features.online.protocol import Increment
    >>> class Store:  # the smallest OnlineStore
    ...     def __init__(self): self.h, self.seen = {}, set()
    ...     def apply(self, batch, dedup_ttl_s):
    ...         new = [(e, incs) for e, incs in batch if e not in self.seen]
    ...         for e, incs in new:
    ...             self.seen.add(e)
    ...             for i in incs:
    ...                 d = self.h.setdefault(i.key, {}); d[i.field] = d.get(i.field, 0.0) + i.amount
    ...         return len(new)
    >>> log, store = MemoryEventLog(), Store()
    >>> _ = log.append([Interaction("u1", "i1", "click", 1_767_225_600_000, event_id="e1")])
    >>> StreamingUpdater(log, store).run()
    1
    >>> store.h["fs2:user:u1:act"]["n.click||10m:1767225600000"], log.committed("features")
    (1.0, 1)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from funnel.core.schema import Impression, Interaction
from funnel.events.protocol import EventLog, LogRecord
from funnel.features.batch_sums import batch_sums
from funnel.features.catalog import Catalog
from funnel.features.definitions import (
    EVENT_SETS,
    FEATURES,
    CounterSpec,
    FeatureDef,
    counter_specs,
    last_n,
)
from funnel.features.online.protocol import (
    FAST_PATH,
    Increment,
    OnlineStore,
    bucket_key,
    capabilities,
    feature_key,
)
from funnel.features.windows import WINDOWS, Window, stale_fields

SUMS_CHUNK = 2_000
"""Events merged per ``apply_sums`` call (bounds one call's size and how long it blocks a server)."""
DEDUP_TTL_S = 7 * 86_400
"""How long the store remembers applied event ids (must exceed the longest replay)."""
_PREFIX = feature_key("", "", "")[:-2]  # "fs2:": keys are built inline as _PREFIX + "user:<id>:<group>"
assert feature_key("user", "u", "g") == f"{_PREFIX}user:u:g"
assert bucket_key("g", "n.x|1d:0") == f"{_PREFIX}bucket:n.x|1d:0:g"


def group_ttls(defs: Sequence[FeatureDef] = FEATURES) -> dict[str, int | None]:
    """Key TTL per hash group: None when the group holds a lifetime feature, else the longest."""
    ttls: dict[str, list[int | None]] = {"recent": [None], "meta": [None]}
    for f in defs:
        if f.counter:
            ttls.setdefault(f.group(), []).append(f.key_ttl_s())
    return {g: None if None in v else max(v) for g, v in ttls.items()}  # type: ignore[type-var]


def bucket_ttls(defs: Sequence[FeatureDef] = FEATURES) -> dict[tuple[str, str], int | None]:
    """Key TTL of the item bucket keys per ``(group, resolution)``: the longest of their features."""
    ttls: dict[tuple[str, str], list[int | None]] = {}
    for f in defs:
        if f.counter and f.entity == "item":
            ttls.setdefault((f.group(), WINDOWS[f.window].res), []).append(f.key_ttl_s())
    return {k: None if None in v else max(v) for k, v in ttls.items()}  # type: ignore[type-var]


def _parts(spec: CounterSpec, defs: Sequence[FeatureDef]) -> list[tuple[str, Window, int | None]]:
    """One ``(group, window, key ttl)`` per resolution the counter's windows need."""
    ttls, buckets, out = group_ttls(defs), bucket_ttls(defs), {}
    for name in spec.windows:
        w, group = WINDOWS[name], spec.group(name)
        ttl = buckets[(group, w.res)] if spec.entity == "item" else ttls[group]
        out.setdefault((group, w.res), (group, w, ttl))
    return list(out.values())


class EventFeaturizer:
    """Turns one event into the increments of every counter it feeds (pure, no I/O)."""

    def __init__(self, catalog: Catalog | None = None, defs: Sequence[FeatureDef] = FEATURES) -> None:
        self.catalog = catalog or Catalog({}, {}, {})
        specs = counter_specs(defs)
        self._by_type: dict[str, list[tuple]] = {}
        for spec in specs["interactions"]:
            parts = _parts(spec, defs)
            for typ in spec.events:
                self._by_type.setdefault(typ, []).append((spec.entity, spec.counter, parts))
        self._imp = [(s.counter, _parts(s, defs)) for s in specs["impressions"]]
        self._cache: dict[tuple[str, str], Increment] = {}
        last = [f for f in defs if f.aggregation == "last_n"]
        self._recent_types = frozenset(t for f in last for t in EVENT_SETS[f.events])

    def _unit(self, key: str, field: str, ttl: int | None) -> Increment:
        """``Increment(key, field, 1.0, ttl)``, reused: building one costs more than a lookup."""
        if len(self._cache) >= 500_000:
            self._cache.clear()
        inc = self._cache[(key, field)] = Increment(key, field, 1.0, ttl)
        return inc

    def increments(self, event: Interaction | Impression) -> list[Increment]:
        """The increments of ``event`` (an interaction or an impression)."""
        out: list[Increment] = []
        cached, unit = self._cache.get, self._unit
        if type(event) is Impression:
            ts = event.timestamp
            for counter, parts in self._imp:
                for group, w, ttl in parts:
                    key = f"{_PREFIX}bucket:{counter}|{w.res}:{w.bucket_start(ts)}:{group}"
                    for item in event.item_ids:
                        out.append(cached((key, item)) or unit(key, item, ttl))
            return out
        ts, user, item = event.timestamp, event.user_id, event.item_id
        starts = {w.res: f"|{w.res}:{w.bucket_start(ts)}" for w in WINDOWS.values()}
        for entity, counter, parts in self._by_type.get(event.type, ()):
            if counter[0] == "v":
                if event.value is None:
                    continue
                amount = event.value
            else:
                amount = 1.0
            if entity == "user" or entity == "item":
                subs: Sequence[str] = ("",)
            elif entity == "user_item":
                subs = (item,)
            elif entity == "user_category":
                subs = self.catalog.categories.get(item, ())
            else:
                creator = self.catalog.creators.get(item)
                subs = (creator,) if creator else ()
            prefix = f"{_PREFIX}user:{user}:"
            for group, w, ttl in parts:
                key, suffix = prefix + group, starts[w.res]
                for sub in subs:
                    field = f"{counter}|{sub}{suffix}"
                    if entity == "item":  # the bucket's key, the item's field
                        key, field = f"{_PREFIX}bucket:{counter}{suffix}:{group}", item
                    if amount == 1.0:
                        out.append(cached((key, field)) or unit(key, field, ttl))
                    else:
                        out.append(Increment(key, field, amount, ttl))
        if event.type in self._recent_types:
            out.append(Increment(feature_key("user", user, "recent"), f"{item}|{ts}", 1.0, None))
        return out


def event_id(record: LogRecord, log_name: str) -> str:
    """The event's own ``event_id``, or ``"@<log_name>:<offset>"`` (deterministic on replay)."""
    eid = getattr(record.event, "event_id", None)
    return eid if eid else f"@{log_name}:{record.offset}"


class StreamingUpdater:
    """Consumer group ``group`` of ``log`` that keeps ``store``'s counters up to date."""

    def __init__(
        self,
        log: EventLog,
        store: OnlineStore,
        catalog: Catalog | None = None,
        *,
        group: str = "features",
        log_name: str = "events",
        batch_size: int = 5_000,
        dedup_ttl_s: int = DEDUP_TTL_S,
        defs: Sequence[FeatureDef] = FEATURES,
    ) -> None:
        self.log, self.store, self.group, self.log_name = log, store, group, log_name
        self.batch_size, self.dedup_ttl_s = batch_size, dedup_ttl_s
        self.featurizer = EventFeaturizer(catalog, defs)
        self.applied = 0
        self._fast = FAST_PATH in capabilities(store)

    def process(self, records: Sequence[LogRecord]) -> int:
        """Apply ``records`` to the store (no commit); return how many were new to it."""
        n = 0
        step = SUMS_CHUNK if self._fast else max(1, len(records))
        for start in range(0, len(records), step):
            n += self._process(records[start : start + step])
        self.applied += n
        return n

    def _process(self, records: Sequence[LogRecord]) -> int:
        ids = [event_id(r, self.log_name) for r in records]
        if self._fast:
            sums = batch_sums(self.featurizer, [r.event for r in records])
            if sums is not None:
                done = self.store.apply_sums(ids, sums, self.dedup_ttl_s)  # type: ignore[attr-defined]
                if done is not None:
                    return done
        inc = self.featurizer.increments
        return self.store.apply(
            list(zip(ids, (inc(r.event) for r in records), strict=True)), self.dedup_ttl_s
        )

    def step(self, max_records: int | None = None) -> int:
        """Read one batch from the committed offset, apply it, commit; return records read."""
        start = self.log.committed(self.group)
        records = self.log.read(start, max_records or self.batch_size)
        if records:
            self.process(records)
            self.log.commit(self.group, records[-1].offset + 1)
        return len(records)

    def run(self, until: int | None = None) -> int:
        """Consume until the log's end (or offset ``until``); return records read."""
        total = 0
        stop = self.log.end_offset if until is None else until
        while (pos := self.log.committed(self.group)) < stop:
            n = self.step(min(self.batch_size, stop - pos))
            if not n:
                break
            total += n
        return total


def prune(
    store: OnlineStore, keys: Sequence[str], t: int, keep_recent: int = 100, batch_keys: int = 1_000
) -> int:
    """Drop the bucket fields no window can read at ``t`` or later; return how many fields went.

    ``recent`` hashes keep their ``keep_recent`` latest items. Hashes are rewritten with
    ``set_many`` (a replace), so run it from the consumer between batches — never concurrently
    with another writer of the same keys. Idle keys need no pruning: their TTL drops them, and
    item bucket keys (:func:`~funnel.features.online.protocol.bucket_key`) are skipped: each
    holds one bucket, and stops being written, then expires, once its bucket closes.
    """
    ttls, dropped = group_ttls(), 0
    keys = [k for k in keys if not k.startswith(f"{_PREFIX}bucket:")]
    for start in range(0, len(keys), batch_keys):
        chunk = list(keys[start : start + batch_keys])
        rows: dict[str, dict[str, float]] = {}
        for key, h in zip(chunk, store.get_many(chunk), strict=True):
            if key.endswith(":recent"):
                keep = set(last_n(read_recent(h), t + 1, keep_recent))
                gone = [f for f in h if f.rpartition("|")[0] not in keep]
            else:
                gone = stale_fields(h, t)
            if gone:
                dropped, drop = dropped + len(gone), set(gone)
                rows[key] = {k: v for k, v in h.items() if k not in drop}
        by_group: dict[str, dict[str, dict[str, float]]] = {}
        for key, row in rows.items():
            by_group.setdefault(key.rpartition(":")[2], {})[key] = row
        for group, grows in by_group.items():
            store.set_many(grows, ttls.get(group))
    return dropped


def read_recent(h: Mapping[str, float]) -> dict[str, int]:
    """Item -> latest timestamp from a ``recent`` hash (fields ``"<item>|<ts>"``; parses memoised)."""
    out: dict[str, int] = {}
    if len(_RECENT) > 500_000:
        _RECENT.clear()
    for field in h:
        parsed = _RECENT.get(field)
        if parsed is None:
            item, _, ts = field.rpartition("|")
            parsed = _RECENT[field] = (item, int(ts))
        item, t = parsed
        if t > out.get(item, -1):
            out[item] = t
    return out


_RECENT: dict[str, tuple[str, int]] = {}
