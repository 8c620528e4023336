r"""Generic CSV and Parquet files, mapped to the canonical schemas by a :class:`ColumnMapping`.

Interactions come from ``path``; items, optionally, from ``items_path``. An optional mapping left
at ``None`` falls back to the column of the canonical name when the file has one (``type``,
``value``, ``title``...), so a file already in funnel's layout needs no mapping at all. A time
column's unit (epoch s, epoch ms or ISO 8601 text) is detected once, on the first chunk, unless
given. Parquet "lines" are 1-based row numbers.

Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "events.csv"
    >>> _ = p.write_text("uid,iid,when,stars\n7,0042,2013-04-03T22:45:07Z,4.5\n")
    >>> m = ColumnMapping(user_col="uid", item_col="iid", time_col="when", value_col="stars")
    >>> [part] = open_tabular(p, "csv", m).parts(ReadContext())
    >>> part.table.select(["user_id", "item_id", "type", "value"]).to_pylist()
    [{'user_id': '7', 'item_id': '0042', 'type': 'rating', 'value': 4.5}]
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from funnel.core.errors import ConfigError, NotFoundError, ValidationError
from funnel.data.importers.base import (
    KINDS,
    Dataset,
    Part,
    ReadContext,
    constant,
    finish,
    json_objects,
    split_list,
)
from funnel.data.importers.delimited import TextFormat, iter_chunks, read_header
from funnel.data.validation import TIME_UNITS, detect_time_unit


@dataclass
class ColumnMapping:
    """Which source column holds each canonical field, and how to read it.

    ``default_type`` is the event type when there is no type column: ``"rating"`` when a value
    column is used, else ``"click"`` (``None`` means exactly that). ``time_unit`` and
    ``published_unit`` are ``"s"``, ``"ms"``, ``"iso"`` or ``"auto"``.
    """

    user_col: str = "user_id"
    item_col: str = "item_id"
    time_col: str = "timestamp"
    type_col: str | None = None
    value_col: str | None = None
    default_type: str | None = None
    time_unit: str = "auto"
    event_id_col: str | None = None
    request_id_col: str | None = None
    position_col: str | None = None
    item_id_col: str = "item_id"
    title_col: str | None = None
    description_col: str | None = None
    categories_col: str | None = None
    categories_sep: str = "|"
    tags_col: str | None = None
    tags_sep: str = "|"
    creator_col: str | None = None
    published_col: str | None = None
    published_unit: str = "auto"
    status_col: str | None = None
    attribute_cols: list[str] = field(default_factory=list)
    delimiter: str = ","
    encoding: str = "utf-8"

    def interaction_columns(self, available: Collection[str]) -> dict[str, str]:
        """Canonical field -> source column for interactions, after the canonical-name fallback."""
        optional = {
            "type": self.type_col,
            "value": self.value_col,
            "event_id": self.event_id_col,
            "request_id": self.request_id_col,
            "position": self.position_col,
        }
        cols = {"user_id": self.user_col, "item_id": self.item_col, "timestamp": self.time_col}
        return cols | _resolve(optional, available)

    def item_columns(self, available: Collection[str]) -> dict[str, str]:
        """Canonical field -> source column for items (attributes excluded)."""
        optional = {
            "title": self.title_col,
            "description": self.description_col,
            "categories": self.categories_col,
            "tags": self.tags_col,
            "creator_id": self.creator_col,
            "published_at": self.published_col,
            "status": self.status_col,
        }
        return {"item_id": self.item_id_col} | _resolve(optional, available)


def _resolve(optional: dict[str, str | None], available: Collection[str]) -> dict[str, str]:
    out = {k: v for k, v in optional.items() if v is not None}
    return out | {k: k for k, v in optional.items() if v is None and k in available}


_TEXT_TYPES = {"value": pa.float64(), "position": pa.int64()}


def _check(fmt_name: str, path: Path, wanted: Collection[str], available: list[str]) -> None:
    missing = [c for c in wanted if c not in available]
    if missing:
        raise ValidationError(
            f"not in {fmt_name} file {path.name} (columns: {', '.join(available)})", field=missing[0]
        )


class _Source:
    """One CSV or Parquet file read as raw tables (source column names) with source lines."""

    def __init__(self, path: Path, fmt: str, mapping: ColumnMapping) -> None:
        if not path.exists():
            raise NotFoundError(f"no such file: {path}")
        self.path, self.fmt = path, fmt
        self.text = TextFormat(mapping.delimiter, header=True, quoting=True, encoding=mapping.encoding)
        self.columns = pq.read_schema(path).names if fmt == "parquet" else read_header(path, self.text)

    def chunks(
        self, ctx: ReadContext, types: dict[str, pa.DataType]
    ) -> Iterator[tuple[pa.Table, np.ndarray, list, int]]:
        if self.fmt == "csv":
            for raw in iter_chunks(self.path, self.text, types, ctx.chunk_bytes, ctx.on_bytes):
                yield raw.table, raw.lines, raw.bad, raw.rows
            return
        pf = pq.ParquetFile(self.path)
        size, total, done = self.path.stat().st_size, max(pf.metadata.num_rows, 1), 0
        for batch in pf.iter_batches(batch_size=max(1024, ctx.chunk_bytes // 64), columns=list(types)):
            lines = np.arange(done + 1, done + batch.num_rows + 1, dtype=np.int64)
            done += batch.num_rows
            ctx.on_bytes(size * batch.num_rows // total)
            yield pa.Table.from_batches([batch]), lines, [], batch.num_rows

    def sample(self, column: str) -> pa.ChunkedArray:
        """The first ~1 MB (CSV) or batch (Parquet) of ``column``, to detect its time unit."""
        ctx = ReadContext(chunk_bytes=1 << 20)
        for table, *_ in self.chunks(ctx, {column: pa.string()}):
            return table.column(column)
        return pa.chunked_array([], pa.string())


def _unit(unit: str, src: _Source, column: str) -> str:
    if unit not in TIME_UNITS:
        raise ConfigError(f"unknown time unit {unit!r}; known: {', '.join(TIME_UNITS)}")
    return detect_time_unit(src.sample(column)) if unit == "auto" else unit


def interaction_parts(ctx: ReadContext, src: _Source, mapping: ColumnMapping) -> Iterator[Part]:
    """Stream interactions from a CSV or Parquet source through the mapping."""
    cols = mapping.interaction_columns(src.columns)
    _check(src.fmt, src.path, cols.values(), src.columns)
    default = mapping.default_type or ("rating" if "value" in cols else "click")
    unit = _unit(mapping.time_unit, src, cols["timestamp"])
    types = {c: _TEXT_TYPES.get(f, pa.string()) for f, c in cols.items()}
    if unit in ("s", "ms"):
        types[cols["timestamp"]] = pa.int64()
    for table, lines, parse_bad, rows in src.chunks(ctx, types):
        canonical = {f: table.column(c) for f, c in cols.items()}
        if "type" not in canonical:
            canonical["type"] = constant(default, table.num_rows)
        yield finish(
            "interactions", src.path, pa.table(canonical), lines, parse_bad, rows, cols, time_unit=unit
        )


def item_parts(ctx: ReadContext, src: _Source, mapping: ColumnMapping) -> Iterator[Part]:
    """Stream items from a CSV or Parquet source through the mapping."""
    cols = mapping.item_columns(src.columns)
    _check(src.fmt, src.path, [*cols.values(), *mapping.attribute_cols], src.columns)
    types = dict.fromkeys([*cols.values(), *mapping.attribute_cols], pa.string())
    unit = _unit(mapping.published_unit, src, cols["published_at"]) if "published_at" in cols else "ms"
    for table, lines, parse_bad, rows in src.chunks(ctx, types):
        canonical = {f: table.column(c) for f, c in cols.items()}
        for f, sep in (("categories", mapping.categories_sep), ("tags", mapping.tags_sep)):
            if f in canonical and pa.types.is_string(canonical[f].type):
                canonical[f] = split_list(canonical[f], sep)
        if mapping.attribute_cols:
            canonical["attributes"] = json_objects({a: table.column(a) for a in mapping.attribute_cols})
        yield finish("items", src.path, pa.table(canonical), lines, parse_bad, rows, cols, time_unit=unit)


def open_tabular(
    path: str | Path,
    fmt: str,
    mapping: ColumnMapping | None = None,
    items_path: str | Path | None = None,
    kinds: Collection[str] = KINDS,
) -> Dataset:
    """Plan the import of a generic ``"csv"`` or ``"parquet"`` interactions file (+ items file).

    Raises:
        NotFoundError: a file does not exist.
        ValidationError: a mapped column is not in the file.
    """
    mapping = mapping or ColumnMapping()
    sources: list[tuple[str, _Source]] = []
    if items_path is not None and "items" in kinds:
        sources.append(("items", _Source(Path(items_path), fmt, mapping)))
    if "interactions" in kinds:
        sources.append(("interactions", _Source(Path(path), fmt, mapping)))

    def parts(ctx: ReadContext) -> Iterator[Part]:
        for kind, src in sources:
            yield from (item_parts if kind == "items" else interaction_parts)(ctx, src, mapping)

    return Dataset([src.path for _, src in sources], parts)
