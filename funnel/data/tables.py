"""Bring user-supplied tables (pandas or Arrow) into the canonical schemas, validated.

The Python API (``Engine.import_*``) and the importers share the validation rules of
:mod:`funnel.data.validation`; this module adds the conversions a caller's table may need first:
pandas → Arrow, integer/ISO/datetime timestamps → ``timestamp[ms, UTC]``, ``|``-joined category
strings → lists, attribute dicts → JSON.

Example:
    >>> t = to_canonical_interactions(pa.table({"user_id": ["u"], "item_id": ["i"],
    ...                                         "timestamp": [1_700_000_000]}))
    >>> t.column("timestamp")[0].as_py().year, t.column("type")[0].as_py()
    (2023, 'click')
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from funnel.core.errors import ValidationError
from funnel.core.schema import INTERACTIONS, ITEMS, TIMESTAMP, USERS
from funnel.data.validation import validate_interactions, validate_items

SECONDS_BELOW = 100_000_000_000
"""``time_unit="auto"``: integer timestamps below this are epoch seconds, else milliseconds."""


def to_arrow(table: Any) -> pa.Table:
    """An Arrow table from Arrow, pandas, or a dict of columns."""
    if isinstance(table, pa.Table):
        return table
    if isinstance(table, pa.RecordBatch):
        return pa.Table.from_batches([table])
    if isinstance(table, dict):
        return pa.table(table)
    if hasattr(table, "to_arrow"):  # polars and friends
        return table.to_arrow()
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is optional
        pd = None
    if pd is not None and isinstance(table, pd.DataFrame):
        return pa.Table.from_pandas(table, preserve_index=False)
    raise ValidationError(
        f"expected a pandas DataFrame or an Arrow table, got {type(table).__name__}", field="table"
    )


def to_timestamp(column: pa.ChunkedArray | pa.Array, name: str, time_unit: str = "auto") -> pa.ChunkedArray:
    """Convert epoch seconds/ms, ISO strings or datetimes to ``timestamp[ms, UTC]``."""
    if isinstance(column, pa.Array):
        column = pa.chunked_array([column])
    t = column.type
    try:
        if pa.types.is_timestamp(t):
            return column.cast(pa.timestamp(t.unit, tz=t.tz or "UTC")).cast(TIMESTAMP)
        if pa.types.is_date(t):
            return column.cast(pa.timestamp("ms")).cast(TIMESTAMP)
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            return pc.cast(pc.strptime(column, "%Y-%m-%dT%H:%M:%S", "ms", error_is_null=False), TIMESTAMP)
        if pa.types.is_integer(t) or pa.types.is_floating(t):
            values = column.cast(pa.float64())
            if time_unit == "auto":
                biggest = pc.max(pc.abs(values)).as_py() or 0
                time_unit = "s" if biggest < SECONDS_BELOW else "ms"
            if time_unit not in ("s", "ms"):
                raise ValidationError(
                    f"time_unit must be auto, s or ms, got {time_unit!r}", field="time_unit"
                )
            scale = 1000.0 if time_unit == "s" else 1.0
            ms = pc.multiply(values, scale)
            ok = pc.and_(pc.is_finite(ms), pc.less(pc.abs(ms), 9.2e18))
            ms = pc.if_else(ok, ms, pa.scalar(None, pa.float64()))
            return pc.cast(pc.cast(ms, pa.int64(), safe=False), TIMESTAMP)
    except pa.ArrowInvalid as err:
        raise ValidationError(f"cannot read as a timestamp: {err}", field=name) from err
    raise ValidationError(
        f"has unsupported type {t}; use epoch seconds/ms, ISO 8601 or datetimes", field=name
    )


def _bad_rows_error(bad: list[Any]) -> ValidationError:
    lines = [f"{b.field} (row {b.line}): {b.reason}" for b in bad[:20]]
    more = f"; and {len(bad) - 20} more" if len(bad) > 20 else ""
    first = bad[0]
    err = ValidationError(f"{len(bad)} bad row(s): " + "; ".join(lines) + more)
    err.field, err.row = first.field, first.line
    return err


def to_canonical_interactions(table: pa.Table, time_unit: str = "auto") -> pa.Table:
    """Validate and convert a caller's interactions table; raise on any bad row (rows are 1-based)."""
    for required in ("user_id", "item_id", "timestamp"):
        if required not in table.column_names:
            raise ValidationError("required column is missing", field=required)
    cols: dict[str, Any] = {}
    for f in INTERACTIONS:
        if f.name == "timestamp":
            cols[f.name] = to_timestamp(table.column("timestamp"), "timestamp", time_unit)
        elif f.name in table.column_names:
            cols[f.name] = table.column(f.name)
        elif f.name == "type":
            cols[f.name] = pa.array(["click"] * table.num_rows, pa.string())
    for name in ("user_id", "item_id", "event_id", "request_id"):
        if name in cols and not pa.types.is_string(cols[name].type):
            cols[name] = pc.cast(cols[name], pa.string())
    good, bad = validate_interactions(pa.table(cols), np.arange(1, table.num_rows + 1))
    if bad:
        raise _bad_rows_error(bad)
    return good


def _json_column(column: pa.ChunkedArray) -> pa.Array:
    if pa.types.is_string(column.type):
        return column.combine_chunks()
    return pa.array(
        [None if v is None else json.dumps(v, sort_keys=True) for v in column.to_pylist()], pa.string()
    )


def _list_column(column: pa.ChunkedArray, sep: str = "|") -> pa.Array:
    if pa.types.is_string(column.type):
        return pc.split_pattern(column, sep).combine_chunks()
    return column.cast(pa.list_(pa.string())).combine_chunks()


def to_canonical_items(table: pa.Table) -> pa.Table:
    """Validate and convert a caller's items table (categories/tags may be ``|``-joined strings)."""
    if "item_id" not in table.column_names:
        raise ValidationError("required column is missing", field="item_id")
    cols: dict[str, Any] = {}
    for f in ITEMS:
        if f.name not in table.column_names:
            continue
        col = table.column(f.name)
        if f.name in ("categories", "tags"):
            cols[f.name] = _list_column(col)
        elif f.name == "attributes":
            cols[f.name] = _json_column(col)
        elif f.name == "published_at":
            cols[f.name] = to_timestamp(col, f.name)
        else:
            cols[f.name] = col.cast(f.type)
    good, bad = validate_items(pa.table(cols), np.arange(1, table.num_rows + 1))
    if bad:
        raise _bad_rows_error(bad)
    return good


def to_canonical_users(table: pa.Table) -> pa.Table:
    """Validate and convert a caller's users table (``attributes`` may hold dicts)."""
    if "user_id" not in table.column_names:
        raise ValidationError("required column is missing", field="user_id")
    n = table.num_rows
    user_id = table.column("user_id").cast(pa.string())
    if user_id.null_count or pc.any(pc.equal(pc.utf8_length(user_id), 0)).as_py():
        raise ValidationError("must not be empty", field="user_id")
    created = (
        to_timestamp(table.column("created_at"), "created_at")
        if "created_at" in table.column_names
        else (pa.nulls(n, TIMESTAMP))
    )
    attrs = (
        _json_column(table.column("attributes"))
        if "attributes" in table.column_names
        else pa.nulls(n, pa.string())
    )
    return pa.table({"user_id": user_id, "created_at": created, "attributes": attrs}, schema=USERS)
