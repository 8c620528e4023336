"""``Interactions``: the in-memory, index-addressed form of an interactions table.

Models and evaluation work on dense indices and NumPy arrays, never on strings. This container
holds parallel arrays (user index, item index, time, type code, value) plus the two ``IdMap``s
that translate back to external ids, and builds the sparse user×item matrix models fit on.

Example:
    >>> import pyarrow as pa
    >>> t = pa.table({"user_id": ["u1", "u1", "u2"], "item_id": ["a", "b", "a"],
    ...               "timestamp": [3, 1, 2], "type": ["click", "skip", "like"]})
    >>> inter = Interactions.from_table(t)
    >>> inter.n_users, inter.n_items, len(inter)
    (2, 2, 3)
    >>> inter.to_csr().toarray().tolist()   # the skip is not positive feedback
    [[1.0, 0.0], [1.0, 0.0]]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from funnel.core.idmap import IdMap
from funnel.core.schema import EVENT_CODE, EVENT_TYPES, INTERACTIONS, NEGATIVE_TYPES, TIMESTAMP

NEGATIVE_CODES = np.array(sorted(EVENT_CODE[t] for t in NEGATIVE_TYPES), dtype=np.int8)


def _timestamps_ms(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    if pa.types.is_timestamp(column.type):
        column = column.cast(TIMESTAMP).cast(pa.int64())
    return np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.int64)


@dataclass
class Interactions:
    """Parallel arrays of interactions addressed by dense user and item indices.

    Attributes:
        users: user id <-> row index.
        items: item id <-> column index.
        user_idx, item_idx: ``int32`` indices, one per interaction.
        timestamp: ``int64`` epoch milliseconds.
        type_code: ``int8`` codes into :data:`funnel.core.schema.EVENT_TYPES`.
        value: ``float32``; NaN where the event has no value.
    """

    users: IdMap
    items: IdMap
    user_idx: np.ndarray
    item_idx: np.ndarray
    timestamp: np.ndarray
    type_code: np.ndarray
    value: np.ndarray
    _n_users: int | None = field(default=None, repr=False)
    _n_items: int | None = field(default=None, repr=False)

    @classmethod
    def from_table(
        cls, table: pa.Table, users: IdMap | None = None, items: IdMap | None = None
    ) -> Interactions:
        """Index a canonical interactions table (``type`` defaults to click, ``value`` to NaN).

        New ids are appended to ``users``/``items`` (fresh maps when omitted). Integer timestamps
        are taken as epoch milliseconds.
        """
        users = users if users is not None else IdMap()
        items = items if items is not None else IdMap()
        n = table.num_rows
        u = users.add_many(table.column("user_id"))
        i = items.add_many(table.column("item_id"))
        ts = (
            _timestamps_ms(table.column("timestamp"))
            if "timestamp" in table.column_names
            else (np.zeros(n, dtype=np.int64))
        )
        if "type" in table.column_names:
            codes = pc.index_in(table.column("type"), value_set=pa.array(EVENT_TYPES))
            if codes.null_count:
                raise ValueError("unknown event type in table; validate before indexing")
            type_code = codes.to_numpy(zero_copy_only=False).astype(np.int8)
        else:
            type_code = np.full(n, EVENT_CODE["click"], dtype=np.int8)
        if "value" in table.column_names:
            value = table.column("value").cast(pa.float32()).fill_null(np.nan)
            value = value.to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
        else:
            value = np.full(n, np.nan, dtype=np.float32)
        return cls(users, items, u, i, ts, type_code, value)

    def __len__(self) -> int:
        return len(self.user_idx)

    @property
    def n_users(self) -> int:
        """Rows of the user×item matrix (all known users, even those without events here)."""
        return self._n_users if self._n_users is not None else len(self.users)

    @property
    def n_items(self) -> int:
        """Columns of the user×item matrix (all known items)."""
        return self._n_items if self._n_items is not None else len(self.items)

    def subset(self, mask_or_index: np.ndarray) -> Interactions:
        """The interactions selected by a boolean mask or index array, sharing the id maps."""
        return Interactions(
            self.users,
            self.items,
            self.user_idx[mask_or_index],
            self.item_idx[mask_or_index],
            self.timestamp[mask_or_index],
            self.type_code[mask_or_index],
            self.value[mask_or_index],
            self._n_users,
            self._n_items,
        )

    def to_table(self) -> pa.Table:
        """The canonical ``INTERACTIONS`` table of these events (external ids, no event ids).

        >>> t = pa.table({"user_id": ["u"], "item_id": ["a"], "timestamp": [5], "type": ["like"]})
        >>> Interactions.from_table(t).to_table().select(["user_id", "type"]).to_pylist()
        [{'user_id': 'u', 'type': 'like'}]
        """
        n = len(self)
        value = pa.array(self.value.astype(np.float64), mask=np.isnan(self.value))
        cols = {
            "event_id": pa.nulls(n, pa.string()),
            "user_id": pa.array(self.users.keys_of(self.user_idx), pa.string()),
            "item_id": pa.array(self.items.keys_of(self.item_idx), pa.string()),
            "timestamp": pa.array(self.timestamp, pa.int64()).cast(TIMESTAMP),
            "type": pa.array(np.asarray(EVENT_TYPES, dtype=object)[self.type_code], pa.string()),
            "value": value,
            "request_id": pa.nulls(n, pa.string()),
            "position": pa.nulls(n, pa.int32()),
        }
        return pa.table(cols, schema=INTERACTIONS)

    def positive_mask(self) -> np.ndarray:
        """True for events that are positive implicit feedback (not skip/dislike/not_interested)."""
        return ~np.isin(self.type_code, NEGATIVE_CODES)

    def to_csr(self, *, positives_only: bool = True, binary: bool = True) -> sp.csr_matrix:
        """The ``n_users × n_items`` float32 matrix; duplicates collapse to 1 when ``binary``."""
        sel = self.positive_mask() if positives_only else slice(None)
        u, i = self.user_idx[sel], self.item_idx[sel]
        data = np.ones(len(u), dtype=np.float32)
        m = sp.csr_matrix((data, (u, i)), shape=(self.n_users, self.n_items), dtype=np.float32)
        m.sum_duplicates()
        if binary:
            m.data[:] = 1.0
        return m
