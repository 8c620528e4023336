"""The offline path: event log -> date-partitioned Parquet lake -> DuckDB -> point-in-time features.

:func:`compact` copies the events after the ``features_lake`` group's committed offset into
``<root>/features_lake/{interactions,impressions}/date=YYYY-MM-DD/part-<first offset>.parquet``
(canonical schemas; a batch is named by its first offset, so a compaction that crashed before
committing rewrites the very same files on the next run). :class:`OfflineStore` reads that lake
with DuckDB and answers :meth:`OfflineStore.get_historical_features` for ``(user_id, item_id,
timestamp)`` rows, point in time: a row at ``t`` sees only events with ``timestamp < t`` inside
each feature's bucketed window (:mod:`funnel.features.windows`) — a range join of the rows with
the events on ``ts < t`` and ``ts >= lower_bound(t)``. The window sums go through the same
:func:`~funnel.features.vectors.compute` as serving.

The store reads the lake once, when it is made, into DuckDB tables in memory (a snapshot: files
compacted later are not seen; make a new store). The queries scan the events once per counter
(14 with the default definitions), and over views each scan decoded every Parquet file again:
:func:`~funnel.features.materialize.build_hashes` on a 200-item world of 20k events in 89 daily
files took 0.98-1.14 s that way against 0.15-0.17 s from the tables.

Example:
    >>> import tempfile, pyarrow as pa
    >>> from funnel.core.schema import Interaction
    >>> from funnel.events.memory_log import MemoryEventLog
    >>> log, root = MemoryEventLog(), tempfile.mkdtemp()
    >>> t0 = 1_767_225_600_000
    >>> _ = log.append([Interaction("u1", "i1", "click", t0), Interaction("u1", "i2", "click", t0 + 1000)])
    >>> compact(log, root)
    2
    >>> rows = pa.table({"user_id": ["u1"], "item_id": ["i1"], "timestamp": [t0 + 1000]})
    >>> out = OfflineStore(root).get_historical_features(rows)
    >>> out.column("user_click_count_1h").to_pylist(), out.column("user_recent_items").to_pylist()
    ([1], [['i1']])
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from funnel.core.schema import IMPRESSIONS, INTERACTIONS, ITEMS
from funnel.events.protocol import EventLog, iter_records
from funnel.events.tables import impressions_table, interactions_table
from funnel.features.definitions import (
    EVENT_SETS,
    FEATURES,
    CounterSpec,
    FeatureDef,
    counter_specs,
    item_columns,
)  # fmt: skip
from funnel.features.vectors import ItemMeta, compute
from funnel.features.windows import WINDOWS

LAKE_DIR = "features_lake"
"""Folder of the features lake under the data root."""
GROUP = "features_lake"
"""Event-log consumer group of :func:`compact`."""
_SCHEMAS = {"interactions": INTERACTIONS, "impressions": IMPRESSIONS}


def write_partitioned(root: str | Path, kind: str, table: pa.Table, part: str) -> int:
    """Write ``table`` (``interactions`` or ``impressions``) into its date partitions; rows written."""
    if table.num_rows == 0:
        return 0
    table = table.cast(_SCHEMAS[kind])
    dates = pc.strftime(table.column("timestamp"), format="%Y-%m-%d")
    for date in pc.unique(dates).to_pylist():
        folder = Path(root) / LAKE_DIR / kind / f"date={date}"
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".tmp-{uuid.uuid4().hex}"
        pq.write_table(table.filter(pc.equal(dates, date)), tmp, compression="zstd")
        os.replace(tmp, folder / f"part-{part}.parquet")
    return table.num_rows


def compact(log: EventLog, root: str | Path, group: str = GROUP, batch_size: int = 100_000) -> int:
    """Copy the log's new events into the lake, committing ``group`` after each batch; events copied."""
    total, stop = 0, log.end_offset
    while (start := log.committed(group)) < stop:
        records = []
        for rec in iter_records(log, start, min(batch_size, 10_000)):
            if rec.offset >= stop or len(records) >= batch_size:
                break
            records.append(rec)
        if not records:
            break
        part = f"{start:020d}"
        write_partitioned(root, "interactions", interactions_table(records), part)
        write_partitioned(root, "impressions", impressions_table(records), part)
        log.commit(group, records[-1].offset + 1)
        total += len(records)
    return total


def sql_in(types: Sequence[str]) -> str:
    """A SQL list literal of ``types``: ``'a', 'b'``."""
    return ", ".join("'" + t.replace("'", "''") + "'" for t in types)


class OfflineStore:
    """DuckDB over the features lake as of construction (and the catalogue ``items``, ``ITEMS`` schema)."""

    def __init__(
        self, root: str | Path, items: pa.Table | None = None, defs: Sequence[FeatureDef] = FEATURES
    ) -> None:
        self.root, self.defs = Path(root), tuple(defs)
        self.con = duckdb.connect()
        items = ITEMS.empty_table() if items is None else items
        self.items_table = items
        self._items = items.select(["item_id", "categories", "creator_id", "published_at"])
        self._items = self._items.set_column(3, "published_at", self._items.column(3).cast(pa.int64()))
        self.con.register("items", self._items)
        for kind in _SCHEMAS:
            files = sorted((self.root / LAKE_DIR / kind).glob("date=*/part-*.parquet"))
            src = f"read_parquet({[str(f) for f in files]!r})" if files else f"{kind}_empty"
            if not files:
                self.con.register(f"{kind}_empty", _SCHEMAS[kind].empty_table())
            if kind == "interactions":
                sql = f"SELECT user_id, item_id, epoch_ms(timestamp) AS ts, type, value FROM {src}"
            else:
                sql = f"SELECT user_id, UNNEST(item_ids) AS item_id, epoch_ms(timestamp) AS ts FROM {src}"
            # a table, not a view: the feature queries scan the events once per counter, and a
            # view would decode every Parquet file of the lake on each scan (module docstring)
            self.con.execute(f"CREATE TEMP TABLE {kind} AS {sql}")

    def events_sql(self, specs: Sequence[CounterSpec]) -> str:
        """SQL of the counter events ``(sid, eid, sub, ts, amount)`` feeding ``specs[sid]``."""
        parts = []
        for sid, s in enumerate(specs):
            src = "impressions" if s.counter == "n.imp" else "interactions"
            sub, join, where = (
                "''",
                "",
                f"WHERE type IN ({sql_in(s.events)})" if src == "interactions" else "",
            )
            if s.entity == "user_item":
                sub = "e.item_id"
            elif s.entity == "user_category":
                sub, join = (
                    "c.cat",
                    "JOIN (SELECT item_id, UNNEST(categories) AS cat FROM items) c USING (item_id)",
                )
            elif s.entity == "user_creator":
                sub, join = "c.creator_id", "JOIN items c USING (item_id)"
                where += " AND c.creator_id IS NOT NULL"
            amount = "e.value" if s.counter.startswith("v.") else "1.0"
            if s.counter.startswith("v."):
                where += " AND e.value IS NOT NULL"
            eid = "e.item_id" if s.entity == "item" else "e.user_id"
            parts.append(f"SELECT {sid} AS sid, {eid} AS eid, {sub} AS sub, e.ts, {amount} AS amount "
                         f"FROM {src} e {join} {where}")  # fmt: skip
        return " UNION ALL ".join(parts)

    def _sums(self, specs: list[CounterSpec], key: str, queries: pa.Table) -> list[dict]:
        """``{(group, counter, sub, window): sum}`` per query row of ``(qid, <key>, t)``."""
        sums: list[dict] = [{} for _ in range(queries.num_rows)]
        if not specs or not queries.num_rows:
            return sums
        wins = ", ".join(
            f'SUM(e.amount) FILTER (WHERE e.ts >= {w.sql_lower_bound("q.t")}) AS "{n}"'
            for n, w in WINDOWS.items()
        )
        self.con.register("q", queries)
        res = self.con.sql(
            f"SELECT q.qid, e.sid, e.sub, {wins} FROM q JOIN ({self.events_sql(specs)}) e "
            f"ON e.eid = q.{key} AND e.ts < q.t GROUP BY q.qid, e.sid, e.sub"
        ).to_arrow_table()
        self.con.unregister("q")
        cols = {n: res.column(n).to_pylist() for n in res.column_names}
        for k, (qid, sid, sub) in enumerate(zip(cols["qid"], cols["sid"], cols["sub"], strict=True)):
            s = specs[sid]
            for w in s.windows:
                v = cols[w][k]
                if v:
                    sums[qid][(s.group(w), s.counter, sub, w)] = v
        return sums

    def _recent(self, queries: pa.Table) -> list[dict[str, int]]:
        last = [f for f in self.defs if f.aggregation == "last_n"]
        out: list[dict[str, int]] = [{} for _ in range(queries.num_rows)]
        if not last or not queries.num_rows:
            return out
        self.con.register("q", queries)
        res = self.con.sql(
            "SELECT q.qid, e.item_id, max(e.ts) AS ts FROM q JOIN interactions e ON e.user_id = q.user_id "
            f"AND e.ts < q.t WHERE e.type IN ({sql_in(EVENT_SETS[last[0].events])}) GROUP BY q.qid, e.item_id"
        ).to_arrow_table()
        self.con.unregister("q")
        for qid, item, ts in zip(*(res.column(c).to_pylist() for c in ("qid", "item_id", "ts")), strict=True):
            out[qid][item] = ts
        return out

    def get_historical_features(self, rows: pa.Table) -> pa.Table:
        """Point-in-time features of ``rows`` (``user_id``, ``item_id``, ``timestamp`` epoch ms).

        Returns ``rows`` with one column per feature (ints, floats, or string lists); see the
        module docstring for the example.
        """
        ts = rows.column("timestamp")
        t = (ts.cast(pa.int64()) if pa.types.is_timestamp(ts.type) else ts).to_numpy(zero_copy_only=False)
        users, items = rows.column("user_id").to_pylist(), rows.column("item_id").to_pylist()
        uq = {k: i for i, k in enumerate(dict.fromkeys(zip(users, t.tolist(), strict=True)))}
        iq = {k: i for i, k in enumerate(dict.fromkeys(zip(items, t.tolist(), strict=True)))}
        uqt = pa.table({"qid": range(len(uq)), "user_id": [u for u, _ in uq], "t": [x for _, x in uq]})
        iqt = pa.table({"qid": range(len(iq)), "item_id": [i for i, _ in iq], "t": [x for _, x in iq]})
        specs = counter_specs(self.defs)
        uspecs = [s for s in specs["interactions"] if s.entity != "item"]
        ispecs = [s for src in ("interactions", "impressions") for s in specs[src] if s.entity == "item"]
        user_sums, recent = self._sums(uspecs, "user_id", uqt), self._recent(uqt)
        item_sums = self._sums(ispecs, "item_id", iqt)
        icols = item_columns(self.defs)
        cat = dict(zip(self._items.column("item_id").to_pylist(), zip(
            self._items.column("categories").to_pylist(), self._items.column("creator_id").to_pylist(),
            self._items.column("published_at").to_pylist(), strict=True), strict=True))  # fmt: skip
        groups: dict[int, list[int]] = {}
        for r, (u, x) in enumerate(zip(users, t.tolist(), strict=True)):
            groups.setdefault(uq[(u, x)], []).append(r)
        values: dict[str, list] = {f.name: [None] * rows.num_rows for f in self.defs}
        for q, idx in groups.items():
            tq = int(t[idx[0]])
            ids = [items[r] for r in idx]
            m = np.array(
                [[item_sums[iq[(i, tq)]].get((*c[0:2], "", *c[2:3]), 0.0) for c in icols] for i in ids]
            )
            info = [cat.get(i, ((), None, None)) for i in ids]
            meta = ItemMeta.from_lists(
                np.array([np.nan if x[2] is None else x[2] for x in info], dtype=np.float64),
                [tuple(x[0] or ()) for x in info], [x[1] for x in info],
            )  # fmt: skip
            user, per_item = compute(
                tq, user_sums[q], recent[q], ids, m.reshape(len(ids), len(icols)), meta, self.defs
            )
            for name, v in user.items():
                for r in idx:
                    values[name][r] = v
            for name, arr in per_item.items():
                for k, r in enumerate(idx):
                    values[name][r] = arr[k].item()
        types = {"int": pa.int64(), "float": pa.float64(), "list": pa.list_(pa.string())}
        out = rows
        for f in self.defs:
            out = out.append_column(f.name, pa.array(values[f.name], type=types[f.dtype]))
        return out
