r"""What every importer shares: the read context, validated parts, and vectorised column helpers.

An importer is a generator of :class:`Part` s — one per chunk of one file, already validated — that
:func:`funnel.data.importers.import_dataset` counts, checks against ``on_error`` and hands to the
sink. The helpers build canonical columns from raw text without a Python loop per row.

Example:
    >>> import pyarrow as pa
    >>> json_objects({"age": pa.array(["24", None]), "zip": pa.array(["01234", "x\"y"])},
    ...              numeric={"age"}).to_pylist()
    ['{"age": 24, "zip": "01234"}', '{"zip": "x\\"y"}']
    >>> title_year(pa.array(["Toy Story (1995)", "Untitled"])).to_pylist()
    ['1995', None]
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from funnel.core.schema import MIN_PUBLISHED_MS
from funnel.data.importers.delimited import TextFormat, iter_chunks
from funnel.data.validation import VALIDATORS, BadRow, Column

KINDS = ("interactions", "items", "users")
"""Kinds of table an import sends to its sink."""
STRING_LIST = pa.list_(pa.string())


@dataclass
class ReadContext:
    """Options every reader needs: chunk size, a progress callback, the kinds wanted."""

    chunk_bytes: int = 64 << 20
    on_bytes: Callable[[int], None] = field(default=lambda n: None)
    kinds: Collection[str] = KINDS


@dataclass
class Dataset:
    """An import plan: the files it will read and the generator of its validated parts."""

    files: list[Path]
    parts: Callable[[ReadContext], Iterator[Part]]


@dataclass
class Part:
    """One validated chunk: good rows in the canonical schema of ``kind`` and the bad rows."""

    kind: str
    file: str
    table: pa.Table
    bad: list[BadRow]
    rows_read: int
    emit: bool = True
    """False for auxiliary data (tags folded into items): counted and checked, not sent on."""


def finish(
    kind: str,
    file: str | Path,
    table: pa.Table,
    lines: np.ndarray,
    parse_bad: list[BadRow],
    rows_read: int,
    rename: dict[str, str] | None = None,
    **validate_kw: str,
) -> Part:
    """Validate ``table`` with the validator of ``kind`` and merge parse-time bad rows.

    ``rename`` maps canonical field names back to the file's column names for the messages.
    """
    name, rename = Path(file).name, rename or {}
    good, bad = VALIDATORS[kind](table, lines, **validate_kw)
    merged = sorted(parse_bad + bad, key=lambda b: b.line)
    merged = [replace(b, file=name, field=rename.get(b.field, b.field)) for b in merged]
    return Part(kind, name, good, merged, rows_read)


def read_text_parts(
    ctx: ReadContext,
    kind: str,
    path: Path,
    fmt: TextFormat,
    types: dict[str, pa.DataType],
    build: Callable[[pa.Table], pa.Table],
    rename: dict[str, str] | None = None,
    **validate_kw: str,
) -> Iterator[Part]:
    """Stream a delimited file: parse, ``build`` canonical columns, validate, one part per chunk."""
    for raw in iter_chunks(path, fmt, types, ctx.chunk_bytes, ctx.on_bytes):
        table = build(raw.table)
        yield finish(kind, path, table, raw.lines, raw.bad, raw.rows, rename, **validate_kw)


def constant(value: str, n: int) -> pa.Array:
    """A string column repeating ``value``."""
    return pa.repeat(pa.scalar(value, pa.string()), n)


def split_list(text: Column, sep: str = "|", drop: Collection[str] = ()) -> Column:
    """Split text into ``list<string>``; blank or ``drop``-listed text gives an empty list."""
    blank = pc.equal(pc.binary_length(pc.utf8_trim_whitespace(text)), 0)
    if drop:
        blank = pc.or_(blank, pc.is_in(text, value_set=pa.array(list(drop), pa.string())))
    return pc.if_else(blank, pa.scalar([], STRING_LIST), pc.split_pattern(text, sep))


def _json_text(s: Column) -> Column:
    for raw, escaped in (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t")):
        s = pc.replace_substring(s, raw, escaped)
    return pc.binary_join_element_wise('"', s, '"', "")


def json_objects(fields: dict[str, Column], numeric: Collection[str] = ()) -> Column:
    """One JSON object per row from parallel columns; null or blank values are left out.

    Values of ``numeric`` fields that look like integers are written as numbers, others as text.
    """
    pieces = []
    for key, col in fields.items():
        s = pc.cast(col, pa.string())
        value = _json_text(s)
        if key in numeric:
            value = pc.if_else(pc.match_substring_regex(s, r"^-?(0|[1-9][0-9]{0,15})$"), s, value)
        entry = pc.binary_join_element_wise(json.dumps(key) + ": ", value, ", ", "")
        empty = pc.or_kleene(pc.is_null(s), pc.equal(pc.binary_length(s), 0))
        pieces.append(pc.if_else(pc.fill_null(empty, True), "", entry))
    body = pc.binary_join_element_wise(*pieces, "") if pieces else pa.array([""])
    return pc.binary_join_element_wise("{", pc.replace_substring_regex(body, ", $", ""), "}", "")


def title_year(titles: Column) -> Column:
    """The year of a ``"Title (1995)"`` title as text, null when there is none."""
    found = pc.extract_regex(titles, r"\((?P<year>[0-9]{4})\)\s*$")
    return pc.struct_field(found, [0])


def date_ms(text: Column, fmt: str = "%Y-%m-%d") -> Column:
    """Epoch ms of dates written as ``fmt``, null when unparsable or not after 1800-01-01."""
    ms = pc.cast(pc.strptime(text, format=fmt, unit="ms", error_is_null=True), pa.int64())
    return pc.if_else(pc.greater(ms, MIN_PUBLISHED_MS), ms, None)


def year_ms(years: Column) -> Column:
    """Epoch ms of January 1 of each year (text); null before 1800, or when missing."""
    return date_ms(pc.binary_join_element_wise(years, "-01-01", ""))


def lookup(keys: Column, table: pa.Table, key: str, value: str) -> Column:
    """``table[value]`` of the row whose ``table[key]`` equals each of ``keys`` (null if none)."""
    idx = pc.index_in(keys, value_set=table.column(key))
    return table.column(value).take(idx)
