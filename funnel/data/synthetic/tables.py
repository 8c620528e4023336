"""Turn simulated index arrays into canonical Arrow tables (vectorised, no per-row Python).

External ids are zero-padded strings with a one-letter prefix (``u0042``, ``i000123``, ``c017``,
``r0000015``, ``e00000007``): built once per id space with Arrow compute kernels and then ``take``-n.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from funnel.core.schema import EVENT_TYPES, IMPRESSIONS, INTERACTIONS, TIMESTAMP
from funnel.data.synthetic.sessions import EventLog

SURFACE = "home"
"""The surface every synthetic slate is served on."""
ARM = "logging_policy"
"""The experiment arm recorded on synthetic impressions."""


def make_ids(prefix: str, n: int, min_width: int = 6) -> pa.Array:
    """``n`` ids ``prefix + zero-padded index``, e.g. ``make_ids("i", 3)`` -> ``i000000, i000001, ...``."""
    width = max(min_width, len(str(max(n - 1, 0))))
    digits = pa.array(np.arange(n, dtype=np.int64)).cast(pa.string())
    padded = pc.utf8_lpad(digits, width=width, padding="0")
    return pc.binary_join_element_wise(prefix, padded, "")


def take_ids(ids: pa.Array, index: np.ndarray, null_below_zero: bool = False) -> pa.Array:
    """``ids[index]``; negative indices become nulls when ``null_below_zero``."""
    index = np.asarray(index)
    idx = pa.array(index if index.dtype in (np.int32, np.int64) else index.astype(np.int64))
    if null_below_zero:
        idx = pc.if_else(pc.less(idx, 0), pa.scalar(None, pa.int64()), idx)
    return ids.take(idx)


def timestamps(ms: np.ndarray) -> pa.Array:
    """Epoch milliseconds as ``timestamp[ms, UTC]``."""
    return pa.array(np.asarray(ms, dtype=np.int64)).cast(TIMESTAMP)


def _pop(log: EventLog, name: str) -> np.ndarray:
    """Take an array out of the log (leaving an empty one) so its memory goes as soon as it is used."""
    value = getattr(log, name)
    setattr(log, name, np.empty(0, dtype=value.dtype))
    return value


def interactions_table(
    log: EventLog, user_ids: pa.Array, item_ids: pa.Array, request_ids: pa.Array
) -> pa.Table:
    """The canonical interactions table; event ids follow time order. Consumes the log's events."""
    n = len(log.user)
    position = _pop(log, "position")
    return pa.Table.from_arrays(
        [
            make_ids("e", n, 8),
            take_ids(user_ids, _pop(log, "user")),
            take_ids(item_ids, _pop(log, "item")),
            timestamps(_pop(log, "timestamp")),
            pa.array(EVENT_TYPES).take(pa.array(_pop(log, "type_code"))),
            pa.array(_pop(log, "value"), from_pandas=True, type=pa.float64()),
            take_ids(request_ids, _pop(log, "request"), null_below_zero=True),
            pa.array(position, mask=position < 0, type=pa.int32()),
        ],
        schema=INTERACTIONS,
    )


def impressions_table(
    log: EventLog, user_ids: pa.Array, item_ids: pa.Array, request_ids: pa.Array
) -> pa.Table:
    """The canonical impressions table: one row per served slate, positions ``0..len-1``.

    Consumes the log's impressions.
    """
    n = len(log.imp_request)
    bounds = _pop(log, "imp_offsets")
    offsets = pa.array(bounds.astype(np.int32))
    positions = np.arange(bounds[-1], dtype=np.int32)
    positions -= np.repeat(bounds[:-1].astype(np.int32), np.diff(bounds))
    return pa.Table.from_arrays(
        [
            take_ids(request_ids, _pop(log, "imp_request")),
            take_ids(user_ids, _pop(log, "imp_user")),
            pa.ListArray.from_arrays(offsets, take_ids(item_ids, _pop(log, "imp_items"))),
            pa.ListArray.from_arrays(offsets, pa.array(positions)),
            timestamps(_pop(log, "imp_timestamp")),
            pc.take(pa.array([SURFACE]), pa.array(np.zeros(n, dtype=np.int32))),
            pc.take(pa.array([ARM]), pa.array(np.zeros(n, dtype=np.int32))),
        ],
        schema=IMPRESSIONS,
    )
