"""Backfill the online store from the offline lake: the bucket hashes streaming would have built.

:func:`materialize` sums the lake's counter events per entity, sub-entity and bucket of every
resolution in DuckDB (the same event definitions as
:meth:`~funnel.features.offline.OfflineStore.events_sql`), builds the online hashes (user
counters: ``"<counter>|<sub>|<res>:<bucket_start>"`` fields under ``feature_key``; item counters:
item-id fields under each bucket's ``bucket_key``), the users' ``recent``
hashes (the ``keep_recent`` latest items each) and the catalogue ``meta`` hashes, and writes them
with ``store.set_many`` in batches of ``batch_keys`` keys, with a progress bar. ``now`` (epoch
ms), when given, drops buckets no window can read at ``now`` or later (item buckets inside a
coarser bucket open at ``now`` stay: serving sums them into it).

``set_many`` *replaces* hashes: materialise before the stream consumer starts, then start it at
the offset the lake was compacted to, e.g. ``log.commit("features", log.committed("features_lake"))``.

Example:
    >>> import tempfile
    >>> from funnel.core.schema import Interaction
    >>> from funnel.events.memory_log import MemoryEventLog
    >>> from funnel.features.offline import compact
    >>> from funnel.features.online.memory import MemoryOnlineStore
    >>> log, root, store = MemoryEventLog(), tempfile.mkdtemp(), MemoryOnlineStore()
    >>> _ = log.append([Interaction("u1", "i1", "click", 1_767_225_600_000)])
    >>> _ = compact(log, root)
    >>> materialize(OfflineStore(root), store, progress=False)  # 4 user hashes, 5 item buckets
    9
    >>> store.get_many(["fs2:user:u1:act"])[0]["n.click||1d:1767225600000"]
    1.0
    >>> store.get_many(["fs2:bucket:n.click|1d:1767225600000:stats"])
    [{'i1': 1.0}]
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from rich.progress import Progress

from funnel.features.definitions import EVENT_SETS, FeatureDef, counter_specs
from funnel.features.offline import OfflineStore, sql_in
from funnel.features.online.protocol import OnlineStore, bucket_key, feature_key
from funnel.features.streaming import Catalog, bucket_ttls, group_ttls
from funnel.features.windows import RES_WINDOWS, WINDOWS


def build_hashes(offline: OfflineStore, now: int | None = None, keep_recent: int = 100) -> dict[str, dict]:
    """``{ttl group: {key: {field: value}}}`` of every counter in the lake (module docstring).

    The TTL group of a key is its hash group, or ``"<group>|<res>"`` for an item bucket key
    (keys of one TTL group share their TTL, see :func:`ttls_by_group`).
    """
    specs = [s for src in ("interactions", "impressions") for s in counter_specs(offline.defs)[src]]
    out: dict[str, dict[str, dict[str, float]]] = {}
    for res, windows in RES_WINDOWS.items():
        b = windows[0].bucket_ms
        use = [(sid, s) for sid, s in enumerate(specs) if any(WINDOWS[w].res == res for w in s.windows)]
        if not use:
            continue
        keep = ", ".join(str(sid) for sid, _ in use)
        bucket = f"(ts // {b}) * {b}" if b else "0"
        lo = min(w.lower_bound(now) for w in windows) if now is not None and b else None
        where = f"sid IN ({keep})"
        if lo is not None:  # item buckets since each coarser open bucket's start stay: serving sums them
            lo_item = min([lo, *(w.bucket_start(now) for w in WINDOWS.values() if w.bucket_ms > b)])
            items = ", ".join(str(sid) for sid, s in use if s.entity == "item") or "-1"
            where += f" AND ts >= CASE WHEN sid IN ({items}) THEN {lo_item} ELSE {lo} END"
        res_table = offline.con.sql(
            f"SELECT sid, eid, sub, {bucket} AS bucket, SUM(amount) AS v FROM ({offline.events_sql(specs)}) "
            f"WHERE {where} GROUP BY ALL"
        ).to_arrow_table()
        cols = [res_table.column(c).to_pylist() for c in ("sid", "eid", "sub", "bucket", "v")]
        for sid, eid, sub, start, v in zip(*cols, strict=True):
            s = specs[sid]
            w = next(name for name in s.windows if WINDOWS[name].res == res)
            group = s.group(w)
            if s.entity == "item":  # the bucket's key, the item's field
                key, field = bucket_key(group, f"{s.counter}|{res}:{start}"), eid
                group = f"{group}|{res}"
            else:
                key, field = feature_key("user", eid, group), f"{s.counter}|{sub}|{res}:{start}"
            h = out.setdefault(group, {}).setdefault(key, {})
            h[field] = h.get(field, 0.0) + v
    last = [f for f in offline.defs if f.aggregation == "last_n"]
    if last:
        recent = offline.con.sql(
            f"SELECT user_id, item_id, ts FROM (SELECT user_id, item_id, max(ts) AS ts, row_number() OVER "
            f"(PARTITION BY user_id ORDER BY max(ts) DESC, item_id DESC) AS k FROM interactions "
            f"WHERE type IN ({sql_in(EVENT_SETS[last[0].events])}) GROUP BY user_id, item_id) "
            f"WHERE k <= {keep_recent}"
        ).to_arrow_table()
        hashes = out.setdefault("recent", {})
        cols = [recent.column(c).to_pylist() for c in ("user_id", "item_id", "ts")]
        for user, item, ts in zip(*cols, strict=True):
            hashes.setdefault(feature_key("user", user, "recent"), {})[f"{item}|{ts}"] = 1.0
    if offline.items_table.num_rows:
        out["meta"] = Catalog.from_items(offline.items_table).meta_rows()
    return out


def ttls_by_group(defs: Sequence[FeatureDef]) -> dict[str, int | None]:
    """The key TTL of each TTL group of :func:`build_hashes`."""
    buckets = {f"{group}|{res}": ttl for (group, res), ttl in bucket_ttls(defs).items()}
    return {**group_ttls(defs), **buckets}


def _chunks(rows: dict[str, dict], size: int) -> Iterator[dict[str, dict]]:
    items = list(rows.items())
    for start in range(0, len(items), size):
        yield dict(items[start : start + size])


def materialize(
    offline: OfflineStore,
    store: OnlineStore,
    *,
    now: int | None = None,
    batch_keys: int = 1_000,
    progress: bool = True,
) -> int:
    """Write the lake's online hashes into ``store`` in batches; return the number of keys written."""
    hashes = build_hashes(offline, now)
    ttls = ttls_by_group(offline.defs)
    total = sum(len(rows) for rows in hashes.values())
    written = 0
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("materialising online features", total=total)
        for group, rows in hashes.items():
            for chunk in _chunks(rows, batch_keys):
                store.set_many(chunk, ttls.get(group))
                written += len(chunk)
                bar.update(task, advance=len(chunk))
    return written
