"""What every candidate source shares: estimator plumbing, artifact save/load, seen-item filtering.

A source subclasses :class:`BaseSource`: it sets ``name`` (also its artifact ``kind``), takes its
hyper-parameters in ``__init__``, learns state in attributes ending in ``_`` and implements
``fit``, ``retrieve``, ``_state() -> dict of arrays`` and ``_set_state(arrays, meta)``.
:func:`retrieval_data` builds the :class:`~funnel.retrieval.source.RetrievalData` every source fits
on from canonical Arrow tables.

Example:
    >>> import pyarrow as pa
    >>> t = pa.table({"user_id": ["u1", "u1", "u2"], "item_id": ["a", "b", "a"], "timestamp": [1, 2, 3]})
    >>> data = retrieval_data(t)
    >>> data.X.shape, data.now_ms, data.items.column("item_id").to_pylist()
    ((2, 2), 3, ['a', 'b'])
    >>> ranked_unseen(np.array([1, 0]), np.array([2.0, 1.0]), np.array([1]), 5)
    (array([0], dtype=int32), array([1.], dtype=float32))
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from funnel.core.arrays import object_full
from funnel.core.artifacts import load_artifact, save_artifact
from funnel.core.errors import NotTrainedError, ValidationError
from funnel.core.estimator import Estimator
from funnel.core.interactions import Interactions
from funnel.core.schema import ITEMS, USERS
from funnel.retrieval.source import Candidates, RetrievalData, RetrievalQuery


def aligned_table(ids: pa.Array, table: pa.Table | None, schema: pa.Schema, key: str) -> pa.Table:
    """``table`` reordered to ``ids`` (one row per id, nulls but ``key`` for ids it lacks)."""
    if table is None or table.num_rows == 0:
        return pa.table({f.name: pa.nulls(len(ids), f.type) for f in schema}).set_column(0, key, ids)
    pos = pc.index_in(ids, value_set=table.column(key).combine_chunks())
    out = table.select([f.name for f in schema if f.name in table.column_names]).take(pos)
    return out.set_column(out.schema.get_field_index(key), key, ids)


def retrieval_data(
    interactions: pa.Table | Interactions,
    items: pa.Table | None = None,
    users: pa.Table | None = None,
    now_ms: int | None = None,
) -> RetrievalData:
    """A :class:`RetrievalData` from an interactions table (or ``Interactions``) and optional tables.

    Catalogue items without interactions are appended to the item index (retrievable by metadata
    sources) — to the given ``Interactions``' own item ``IdMap`` when one is passed; ``now_ms``
    defaults to the last event's time.
    """
    inter = interactions if isinstance(interactions, Interactions) else Interactions.from_table(interactions)
    if items is not None and items.num_rows:
        inter.items.add_many(items.column("item_id"))
        inter._n_items = None if inter._n_items is None else max(inter._n_items, len(inter.items))
    items_t = aligned_table(inter.items.keys, items, ITEMS, "item_id")
    users_t = aligned_table(inter.users.keys, users, USERS, "user_id")
    now = int(inter.timestamp.max()) if now_ms is None and len(inter) else int(now_ms or 0)
    return RetrievalData(inter, inter.to_csr(), items_t, users_t, now)


def listed_mask(items: pa.Table, n: int | None = None) -> np.ndarray:
    """Per item (row ``j`` of ``items`` = item ``j``; ``n`` items, missing rows listed): not unlisted.

    What the ANN indexes hold: an item unlisted at training is left out of them, so index memory
    tracks the listed catalogue (``funnel_index_items`` vs ``funnel_listed_items``).

    >>> listed_mask(pa.table({"status": ["listed", "unlisted", None]}), 4).tolist()
    [True, False, True, True]
    """
    n = items.num_rows if n is None else n
    out = np.ones(n, dtype=bool)
    if "status" in items.column_names and items.num_rows:
        unlisted = pc.fill_null(pc.equal(items.column("status"), "unlisted"), False)
        flags = np.asarray(unlisted.to_numpy(zero_copy_only=False), dtype=bool)[:n]
        out[: len(flags)] = ~flags
    return out


def user_attributes(users: pa.Table, fields: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Per field, the users' attribute values (``str`` array, ``""`` when missing) from the JSON."""
    col = users.column("attributes").to_pylist() if "attributes" in users.column_names else []
    out = {f: object_full(users.num_rows, "") for f in fields}
    for i, text in enumerate(col):
        if text:
            attrs = json.loads(text)
            for f in fields:
                if attrs.get(f) is not None:
                    out[f][i] = str(attrs[f])
    return out


def member(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``bool`` mask of the entries of ``a`` that occur in ``b`` (sort + binary search).

    Same result as ``np.isin`` without its hash-based ``unique``, slow on large arrays.

    >>> member(np.array([3, 1, 7]), np.array([7, 3, 3])).tolist()
    [True, False, True]
    """
    if not len(a) or not len(b):
        return np.zeros(len(a), dtype=bool)
    b = np.sort(b, kind="stable")
    pos = np.minimum(np.searchsorted(b, a), len(b) - 1)
    return b[pos] == a


def ranked_unseen(
    items: np.ndarray, scores: np.ndarray, seen: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """The first ``k`` of a ranked ``items`` list that are not in ``seen`` (and their scores)."""
    head = k + len(seen)  # at most len(seen) of the first k + len(seen) can be seen
    idx = np.flatnonzero(~member(items[:head], seen))[:k]
    return items[idx].astype(np.int32), scores[idx].astype(np.float32)


def seen_of(histories: sp.csr_matrix, row: int) -> np.ndarray:
    """Item indices of row ``row`` of the history matrix."""
    return histories.indices[histories.indptr[row] : histories.indptr[row + 1]]


def candidates(
    items: np.ndarray, scores: np.ndarray, reason: str | np.ndarray, anchor: Any = -1
) -> Candidates:
    """A :class:`Candidates` with one reason (or one per item) and anchor(s)."""
    n = len(items)
    reasons = object_full(n, reason) if isinstance(reason, str) else np.asarray(reason, dtype=object)
    anchors = np.broadcast_to(np.asarray(anchor, dtype=np.int32), (n,)).copy()
    return Candidates(np.asarray(items, np.int32), np.asarray(scores, np.float32), reasons, anchors)


class BaseSource(Estimator):
    """Estimator plumbing shared by the sources: params, fitted check, versioned save/load."""

    name: ClassVar[str] = "base"
    format_version: ClassVar[int] = 1
    n_items_: int

    def _check(self, query: RetrievalQuery | None = None, k: int = 1) -> None:
        if not self.is_fitted:
            raise NotTrainedError(f"{type(self).__name__} is not fitted; call fit() first")
        if k < 1:
            raise ValidationError(f"k must be >= 1, got {k}", field="k")
        if query is not None and query.histories.shape[1] != self.n_items_:
            raise ValidationError(
                f"histories have {query.histories.shape[1]} items, the source was fit on {self.n_items_}",
                field="histories",
            )

    def _state(self) -> dict[str, Any]:
        raise NotImplementedError

    def _set_state(self, arrays: dict[str, Any], meta: dict[str, Any]) -> None:
        raise NotImplementedError

    def _meta(self) -> dict[str, Any]:
        return {}

    def save(self, folder: str | Path) -> None:
        """Write ``manifest.json`` (kind, version, hyper-parameters, meta) and ``arrays.npz``."""
        self._check()
        meta = {"n_items": self.n_items_, **self._meta()}
        save_artifact(
            folder, f"source:{self.name}", self.format_version, self.get_params(), self._state(), meta
        )

    @classmethod
    def load(cls, folder: str | Path) -> Self:
        """Read a source written by :meth:`save` (checks kind and format version; no pickle)."""
        art = load_artifact(folder, f"source:{cls.name}", cls.format_version)
        source = cls(**art.params)
        source.n_items_ = int(art.meta["n_items"])
        source._set_state(art.arrays, art.meta)
        return source
