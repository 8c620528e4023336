"""Event-log records -> Arrow tables in the canonical schemas, for training and the Parquet lake.

``interactions_table`` keeps the interactions of a mixed batch of records and
``impressions_table`` the impressions; each ignores the other kind. Fields the canonical schemas
do not carry are dropped: an interaction's ``context`` and an impression's ``propensities``.

Example:
    >>> from funnel.core.schema import Impression, Interaction
    >>> from funnel.events.protocol import LogRecord
    >>> records = [
    ...     LogRecord(0, Interaction("u1", "i1", "click", 1_700_000_000_000, value=2.0)),
    ...     LogRecord(1, Impression("r1", "u1", ("i1", "i2"), (0, 1), 1_700_000_000_000)),
    ... ]
    >>> interactions_table(records).select(["user_id", "item_id", "value"]).to_pylist()
    [{'user_id': 'u1', 'item_id': 'i1', 'value': 2.0}]
    >>> impressions_table(records).column("item_ids").to_pylist()
    [['i1', 'i2']]
"""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa

from funnel.core.schema import IMPRESSIONS, INTERACTIONS, Impression, Interaction
from funnel.events.protocol import Event, LogRecord


def _events(records: Iterable[LogRecord | Event], kind: type) -> list:
    out = []
    for rec in records:
        ev = rec.event if isinstance(rec, LogRecord) else rec
        if type(ev) is kind:
            out.append(ev)
    return out


def _table(schema: pa.Schema, columns: dict[str, list]) -> pa.Table:
    arrays = []
    for f in schema:
        values = columns[f.name]
        if pa.types.is_timestamp(f.type):
            arrays.append(pa.array(values, type=pa.int64()).cast(f.type))
        else:
            arrays.append(pa.array(values, type=f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def interactions_table(records: Iterable[LogRecord | Event]) -> pa.Table:
    """The interactions among ``records`` (log records or bare events) as an ``INTERACTIONS`` table.

    Rows keep the order of ``records``; ``timestamp`` is epoch ms as ``timestamp[ms, UTC]``.
    """
    events: list[Interaction] = _events(records, Interaction)
    return _table(INTERACTIONS, {f.name: [getattr(e, f.name) for e in events] for f in INTERACTIONS})


def impressions_table(records: Iterable[LogRecord | Event]) -> pa.Table:
    """The impressions among ``records`` (log records or bare events) as an ``IMPRESSIONS`` table."""
    events: list[Impression] = _events(records, Impression)
    columns = {f.name: [getattr(e, f.name) for e in events] for f in IMPRESSIONS}
    columns["item_ids"] = [list(v) for v in columns["item_ids"]]
    columns["positions"] = [list(v) for v in columns["positions"]]
    return _table(IMPRESSIONS, columns)
