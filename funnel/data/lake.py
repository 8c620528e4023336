"""The Parquet lake: the engine's offline copy of interactions, items and users.

Each kind lives in ``<root>/<kind>/`` as Parquet part files in the canonical schema
(:mod:`funnel.core.schema`). Writes are transactional per import: parts are staged in a hidden
folder and moved in only on :meth:`LakeWriter.commit`, so a failed import leaves nothing behind
and a committed one is never half visible. Reading a kind returns one Arrow table (columnar, never
Python objects per row); items and users keep the last version of each id.

Example:
    >>> import tempfile, pyarrow as pa
    >>> from funnel.core.schema import USERS
    >>> lake = Lake(tempfile.mkdtemp())
    >>> with lake.writer() as w:
    ...     w.write("users", pa.table({"user_id": ["u1"], "created_at": [None],
    ...                                "attributes": ["{}"]}, schema=USERS))
    ...     w.commit()
    {'users': 1}
    >>> lake.read("users").num_rows
    1
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from pathlib import Path
from types import TracebackType

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from funnel.core.errors import ConfigError
from funnel.core.schema import INTERACTIONS, ITEMS, USERS

SCHEMAS: dict[str, pa.Schema] = {"interactions": INTERACTIONS, "items": ITEMS, "users": USERS}
KEYS = {"items": "item_id", "users": "user_id"}


def _conform(table: pa.Table | pa.RecordBatch, schema: pa.Schema) -> pa.Table:
    """Cast to ``schema``: add missing nullable columns, drop unknown ones, keep column order."""
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    cols = []
    for f in schema:
        if f.name in table.column_names:
            cols.append(table.column(f.name).cast(f.type))
        elif f.nullable:
            cols.append(pa.nulls(table.num_rows, f.type))
        else:
            raise ConfigError(f"{f.name}: required column missing from the table")
    return pa.table(cols, schema=schema)


class LakeWriter:
    """A staged write into the lake: parts become visible only on :meth:`commit`."""

    def __init__(self, lake: Lake) -> None:
        self._lake = lake
        self._stage = lake.root / f".staging-{uuid.uuid4().hex}"
        self._writers: dict[str, pq.ParquetWriter] = {}
        self.rows: dict[str, int] = {}
        self._done = False

    def write(self, kind: str, batch: pa.Table | pa.RecordBatch) -> None:
        """Append a batch of ``kind`` (interactions, items, users) in its canonical schema."""
        if kind not in SCHEMAS:
            raise ConfigError(f"unknown lake kind {kind!r}; known: {', '.join(SCHEMAS)}")
        table = _conform(batch, SCHEMAS[kind])
        if kind not in self._writers:
            (self._stage / kind).mkdir(parents=True, exist_ok=True)
            path = self._stage / kind / f"part-{time.time_ns()}-{uuid.uuid4().hex[:8]}.parquet"
            self._writers[kind] = pq.ParquetWriter(str(path), SCHEMAS[kind], compression="zstd")
        self._writers[kind].write_table(table)
        self.rows[kind] = self.rows.get(kind, 0) + table.num_rows

    def commit(self) -> dict[str, int]:
        """Close the parts, fsync them and move them into the lake; returns rows per kind."""
        for w in self._writers.values():
            w.close()
        for kind in self._writers:
            dest = self._lake.root / kind
            dest.mkdir(parents=True, exist_ok=True)
            for part in sorted((self._stage / kind).iterdir()):
                with open(part, "rb") as fh:
                    os.fsync(fh.fileno())
                os.replace(part, dest / part.name)
        self._writers.clear()
        self._done = True
        shutil.rmtree(self._stage, ignore_errors=True)
        return dict(self.rows)

    def abort(self) -> None:
        """Drop everything staged."""
        for w in self._writers.values():
            w.close()
        self._writers.clear()
        shutil.rmtree(self._stage, ignore_errors=True)

    def __enter__(self) -> LakeWriter:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None):
        if not self._done:
            self.abort()


class Lake:
    """A folder of Parquet parts per kind; see the module docstring."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def writer(self) -> LakeWriter:
        """Start a staged write (use as a context manager; call ``commit()`` to publish)."""
        return LakeWriter(self)

    def parts(self, kind: str) -> list[Path]:
        """The committed part files of ``kind``, oldest first."""
        folder = self.root / kind
        return sorted(folder.glob("part-*.parquet")) if folder.exists() else []

    def read(self, kind: str, columns: list[str] | None = None) -> pa.Table:
        """All rows of ``kind``; items and users deduplicated to the latest row per id.

        ``columns``: only these are decoded (with the id, which the deduplication needs): the
        catalogue's titles and texts are most of its bytes (1M items: 2.6 s for every column).
        """
        schema = SCHEMAS[kind]
        parts = self.parts(kind)
        key = KEYS.get(kind)
        wanted = None if columns is None else list(dict.fromkeys([*columns, *([key] if key else [])]))
        if not parts:
            table = schema.empty_table()
        else:
            dataset = ds.dataset([str(p) for p in parts], schema=schema, format="parquet")
            table = dataset.to_table(columns=wanted)
        if key is not None and table.num_rows:
            table = _latest_per_key(table, key)
        return table.select(columns) if columns else table


def _latest_per_key(table: pa.Table, key: str) -> pa.Table:
    """Keep the last occurrence of every key (later parts and rows override earlier ones)."""
    n = table.num_rows
    reversed_keys = table.column(key).take(pa.array(np.arange(n - 1, -1, -1)))
    first_in_reversed = pc.index_in(pc.unique(reversed_keys), value_set=reversed_keys).to_numpy(
        zero_copy_only=False
    )
    keep = np.sort(n - 1 - first_in_reversed.astype(np.int64))
    return table.take(pa.array(keep))
