"""Bring user-supplied tables (pandas, Arrow, dict of columns) into the canonical schemas.

The Python API (``Engine.import_*``) shares every rule with the importers: it calls the same
validators (:mod:`funnel.data.validation`, time unit ``auto``: epoch seconds, epoch ms, ISO 8601
or datetimes) and reports bad rows the same way (:func:`funnel.data.importers.report.bad_rows_error`),
with rows numbered from 1. The only conversion added here: ``attributes`` given as dicts become
JSON text.

Example:
    >>> t = to_canonical("interactions", pa.table({"user_id": ["u"], "item_id": ["i"],
    ...                                            "timestamp": [1_700_000_000]}))
    >>> t.column("timestamp")[0].as_py().year, t.column("type")[0].as_py()
    (2023, 'click')
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa

from funnel.core.errors import ValidationError
from funnel.data.importers.report import bad_rows_error
from funnel.data.validation import VALIDATORS


def to_arrow(table: Any) -> pa.Table:
    """An Arrow table from Arrow, pandas (or anything with ``to_arrow``), or a dict of columns."""
    if isinstance(table, pa.Table):
        return table
    if isinstance(table, pa.RecordBatch):
        return pa.Table.from_batches([table])
    if isinstance(table, dict):
        return pa.table(table)
    if hasattr(table, "to_arrow"):  # polars and friends
        return table.to_arrow()
    if type(table).__name__ == "DataFrame" and hasattr(table, "columns"):  # pandas, without importing it
        return pa.Table.from_pandas(table, preserve_index=False)
    raise ValidationError(
        f"expected a pandas DataFrame or an Arrow table, got {type(table).__name__}", field="table"
    )


def _attributes_as_json(table: pa.Table) -> pa.Table:
    """Replace a non-text ``attributes`` column (dicts, structs) by JSON text.

    Arrow turns a column of dicts into a struct holding every key seen in any row, so a key one
    row lacks reads back as null: null-valued keys are dropped to restore what the caller wrote.
    """
    if "attributes" not in table.column_names:
        return table
    column = table.column("attributes")
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return table
    text = [
        None
        if v is None
        else json.dumps({k: x for k, x in v.items() if x is not None}, sort_keys=True, default=str)
        for v in column.to_pylist()
    ]
    return table.set_column(table.column_names.index("attributes"), "attributes", pa.array(text, pa.string()))


def to_canonical(kind: str, table: Any, time_unit: str = "auto") -> pa.Table:
    """Validate a caller's ``kind`` table (interactions, items, users); raise on any bad row."""
    arrow = _attributes_as_json(to_arrow(table))
    good, bad = VALIDATORS[kind](arrow, np.arange(1, arrow.num_rows + 1), time_unit=time_unit)
    if bad:
        raise bad_rows_error(bad)
    return good
