"""``IdMap``: external string ids <-> dense int32 indices, append-only and persisted.

An id, once given an index, keeps it forever: models, indexes and feature arrays are addressed by
these indices, so they stay valid as the catalogue grows. Batch lookups are vectorised with Arrow
hashing; scalar lookups use a lazily built dict.

The file is an Arrow IPC file with one ``id`` column and ``format_version`` in its metadata; it is
replaced atomically (write, fsync, rename). Loading checks the version and never unpickles.

Example:
    >>> m = IdMap()
    >>> m.add_many(["b", "a", "b", "c"]).tolist()
    [0, 1, 0, 2]
    >>> m.lookup(["c", "zz"]).tolist()
    [2, -1]
    >>> m.key(1), len(m)
    ('a', 3)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from funnel.core.errors import CorruptDataError, ResourceLimitError

FORMAT_VERSION = 1
MAX_IDS = np.iinfo(np.int32).max
_SCALAR_LOOKUP = 64
"""Lists up to this long are looked up in the dict (see :meth:`IdMap.lookup`)."""


def _as_string_array(values: Iterable[str] | pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not isinstance(values, pa.Array):
        values = pa.array(list(values), type=pa.string())
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if not pa.types.is_string(values.type):
        values = values.cast(pa.string())
    return values


class IdMap:
    """Append-only bijection between string ids and dense ``int32`` indices ``0..len-1``."""

    def __init__(self, keys: Iterable[str] | pa.Array | None = None) -> None:
        self._chunks: list[pa.Array] = []
        self._all: pa.Array = pa.array([], type=pa.string())
        self._dict: dict[str, int] | None = None
        if keys is not None:
            self.add_many(keys)

    def __len__(self) -> int:
        return len(self._all)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key in self._mapping()

    def _mapping(self) -> dict[str, int]:
        if self._dict is None:
            self._dict = {k: i for i, k in enumerate(self._all.to_pylist())}
        return self._dict

    @property
    def keys(self) -> pa.Array:
        """All ids in index order, as an Arrow string array."""
        return self._all

    def key(self, index: int) -> str:
        """The external id of ``index``."""
        return self._all[int(index)].as_py()

    def keys_of(self, indices: Sequence[int] | np.ndarray) -> list[str]:
        """The external ids of many indices, in order."""
        return self._all.take(pa.array(np.asarray(indices, dtype=np.int64))).to_pylist()

    def get(self, key: str, default: int = -1) -> int:
        """The index of ``key``, or ``default`` when unknown."""
        return self._mapping().get(key, default)

    def lookup(self, keys: Iterable[str] | pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Indices of many ids as ``int32``; unknown ids give ``-1``.

        A short Python list or tuple of strings (a request's few users) goes through the scalar
        dict: Arrow's ``index_in`` hashes the whole map on every call, O(len(self)).
        """
        short = isinstance(keys, list | tuple) and len(keys) <= _SCALAR_LOOKUP
        if short and all(type(k) is str for k in keys):
            get = self._mapping().get
            return np.fromiter((get(k, -1) for k in keys), np.int32, len(keys))
        arr = _as_string_array(keys)
        idx = pc.index_in(arr, value_set=self._all)
        return idx.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32, copy=False)

    def add(self, key: str) -> int:
        """Index of ``key``, assigning the next index when it is new."""
        return int(self.add_many([key])[0])

    def add_many(self, keys: Iterable[str] | pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Indices of many ids, assigning new indices (in first-seen order) to unknown ones."""
        arr = _as_string_array(keys)
        if arr.null_count:
            raise ValueError("ids must not be null")
        idx = pc.index_in(arr, value_set=self._all)
        if idx.null_count:
            missing = pc.filter(arr, pc.is_null(idx))
            new = pc.unique(missing)
            if len(self._all) + len(new) > MAX_IDS:
                raise ResourceLimitError(f"IdMap is full ({MAX_IDS} ids)")
            start = len(self._all)
            self._chunks.append(new)
            self._all = pa.concat_arrays([self._all, new])
            if self._dict is not None:
                self._dict.update({k: start + i for i, k in enumerate(new.to_pylist())})
            idx = pc.index_in(arr, value_set=self._all)
        return idx.to_numpy(zero_copy_only=False).astype(np.int32, copy=False)

    def save(self, path: str | Path) -> None:
        """Write atomically to ``path`` (Arrow IPC with a format version)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        schema = pa.schema([("id", pa.string())], metadata={"format_version": str(FORMAT_VERSION)})
        tmp = path.with_name(path.name + ".tmp")
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            writer.write_table(pa.table({"id": self._all}, schema=schema))
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> IdMap:
        """Read a map written by :meth:`save`; raise ``CorruptDataError`` on a bad version."""
        with pa.memory_map(str(path), "r") as source:
            table = pa.ipc.open_file(source).read_all()
        meta = table.schema.metadata or {}
        version = int(meta.get(b"format_version", b"0"))
        if version != FORMAT_VERSION:
            raise CorruptDataError(
                f"{path}: IdMap format_version {version}, this funnel reads {FORMAT_VERSION}"
            )
        out = cls()
        keys = table.column("id").combine_chunks()
        if len(keys):
            out._chunks, out._all = [keys], keys
        return out
