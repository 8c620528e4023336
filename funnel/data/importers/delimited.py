r"""Streaming reader for delimited text that keeps the exact source line of every row.

A file is read in byte blocks cut at the last record end (a newline outside quotes, found with
NumPy), so no record spans two chunks. Each chunk is parsed by ``pyarrow.csv`` — multi-threaded,
typed — and the line of each record is computed from the newline positions: blank lines are
skipped without shifting the numbering, rows with the wrong number of fields are dropped and
reported, and a chunk whose typed parse fails (``"abc"`` in a number column) is parsed again as
text so that validation can name each unparsable value. Multi-character delimiters (``::``) are
replaced by a control byte; non-UTF-8 encodings are transcoded chunk by chunk.

Example:
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "r.dat"
    >>> _ = p.write_bytes(b"1::0002844::7::1365029107\n\n2::0104257\n3::1::8::1\n")
    >>> fmt = TextFormat("::", header=False, quoting=False, names=("user", "item", "rating", "ts"))
    >>> [chunk] = iter_chunks(p, fmt, {"item": pa.string(), "rating": pa.float64()})
    >>> chunk.table.column("item").to_pylist(), chunk.lines.tolist(), chunk.rows
    (['0002844', '1'], [1, 4], 3)
    >>> print(chunk.bad[0])
    fields (row 3): expected 4 fields, found 2
"""

from __future__ import annotations

import codecs
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pv

from funnel.core.errors import ValidationError
from funnel.data.validation import BadRow

_UNIT_SEP = "\x1f"
_BOM = b"\xef\xbb\xbf"
_NL, _CR, _QUOTE = 10, 13, 34


@dataclass(frozen=True)
class TextFormat:
    """How a delimited file is laid out: delimiter (any length), header, quoting, encoding."""

    delimiter: str = ","
    header: bool = True
    quoting: bool = True
    encoding: str = "utf-8"
    names: tuple[str, ...] = ()
    """Column names when the file has no header."""

    @property
    def sep(self) -> str:
        """The one-character delimiter pyarrow sees (multi-character ones are substituted)."""
        return self.delimiter if len(self.delimiter) == 1 else _UNIT_SEP


@dataclass
class RawChunk:
    """One parsed chunk: the rows that parsed, their source lines, and the rows dropped."""

    table: pa.Table
    lines: np.ndarray
    """``int64`` 1-based line of each row of ``table``."""
    bad: list[BadRow]
    """Rows that could not be split into the expected fields (not in ``table``)."""
    rows: int
    """Data rows seen in the chunk (blank lines and the header excluded): ``len(table) + len(bad)``."""


def sniff_encoding(path: str | Path, limit: int = 8 << 20) -> str:
    """``"utf-8"`` if the first ``limit`` bytes decode as UTF-8, else ``"latin-1"``."""
    with open(path, "rb") as f:
        head = f.read(limit)
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return "latin-1"
    return "utf-8"


def _record_end(buf: bytes, quoting: bool) -> int:
    """Offset just past the last newline that ends a record (outside quotes); 0 if none."""
    if not quoting or b'"' not in buf:
        return buf.rfind(b"\n") + 1
    arr = np.frombuffer(buf, dtype=np.uint8)
    nl = np.flatnonzero(arr == _NL)
    ends = nl[np.searchsorted(np.flatnonzero(arr == _QUOTE), nl) % 2 == 0]
    return int(ends[-1]) + 1 if len(ends) else 0


def _pieces(
    path: Path, quoting: bool, chunk_bytes: int, on_bytes: Callable[[int], None]
) -> Iterator[tuple[bytes, int]]:
    """Yield ``(whole records ending in a newline, line number of the first one)``."""
    limit = max(8 * chunk_bytes, 256 << 20)
    line, carry = 1, b""
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            on_bytes(len(block))
            buf = carry + block if carry else block
            cut = _record_end(buf, quoting)
            if cut == 0:
                if len(buf) > limit:
                    raise ValidationError("record never ends (unbalanced quote?)", field="line", row=line)
                carry = buf
                continue
            piece, carry = (buf, b"") if cut == len(buf) else (buf[:cut], buf[cut:])
            yield piece, line
            line += piece.count(b"\n")
    if carry:
        yield carry + b"\n", line


def _prepare(piece: bytes, fmt: TextFormat) -> bytes:
    if fmt.encoding.replace("_", "-").lower() not in ("utf-8", "utf8", "ascii"):
        piece = piece.decode(fmt.encoding).encode("utf-8")
    delim = fmt.delimiter.encode()
    if len(delim) > 1:
        if delim[:1] * (len(delim) + 1) in piece:
            # "a:::b" is "a:" then "b": a field may end with, but not start with, the delimiter's char
            pattern = re.escape(delim) + b"(?!" + re.escape(delim[-1:]) + b")"
            return re.sub(pattern, _UNIT_SEP.encode(), piece)
        piece = piece.replace(delim, _UNIT_SEP.encode())
    return piece


def _parse(
    piece: bytes, fmt: TextFormat, names: list[str], types: dict[str, pa.DataType], multiline: bool
) -> tuple[pa.Table, int]:
    """Parse with pyarrow; returns the table and how many rows had the wrong field count."""
    invalid = 0

    def handler(_row: object) -> str:
        nonlocal invalid
        invalid += 1
        return "skip"

    table = pv.read_csv(
        pa.py_buffer(piece),
        read_options=pv.ReadOptions(column_names=names),
        parse_options=pv.ParseOptions(
            delimiter=fmt.sep,
            quote_char='"' if fmt.quoting else False,
            newlines_in_values=multiline,
            invalid_row_handler=handler,
        ),
        convert_options=pv.ConvertOptions(
            column_types=types, include_columns=list(types), null_values=[""], strings_can_be_null=False
        ),
    )
    return table, invalid


def _first_record(buf: bytes, quoting: bool) -> int:
    arr = np.frombuffer(buf, dtype=np.uint8)
    nl = np.flatnonzero(arr == _NL)
    if quoting and b'"' in buf:
        nl = nl[np.searchsorted(np.flatnonzero(arr == _QUOTE), nl) % 2 == 0]
    return int(nl[0]) + 1 if len(nl) else len(buf)


def read_header(path: str | Path, fmt: TextFormat) -> list[str]:
    """Column names: the file's first record when ``fmt.header``, else ``fmt.names``."""
    if not fmt.header:
        return list(fmt.names)
    with open(path, "rb") as f:
        head = f.read(1 << 20).removeprefix(_BOM)
    head = _prepare(head[: _first_record(head, fmt.quoting)], fmt)
    opts = pv.ParseOptions(delimiter=fmt.sep, quote_char='"' if fmt.quoting else False)
    return pv.read_csv(io.BytesIO(head), parse_options=opts).column_names if head.strip() else []


def _chunk(
    piece: bytes, first_line: int, fmt: TextFormat, names: list[str], types: dict[str, pa.DataType]
) -> RawChunk:
    arr = np.frombuffer(piece, dtype=np.uint8)
    nl = np.flatnonzero(arr == _NL)
    quotes = np.flatnonzero(arr == _QUOTE) if fmt.quoting and b'"' in piece else None
    if quotes is None:
        ends, lines = nl, first_line + np.arange(len(nl), dtype=np.int64)
    else:
        ends = nl[np.searchsorted(quotes, nl) % 2 == 0]
        if len(ends) == 0 or ends[-1] != len(piece) - 1:
            row = first_line + int(np.searchsorted(nl, ends[-1] + 1 if len(ends) else 0))
            raise ValidationError("quoted field never ends (unbalanced quote)", field="line", row=row)
    starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
    if quotes is not None:
        lines = first_line + np.searchsorted(nl, starts).astype(np.int64)
    length = ends - starts
    blank = (length == 0) | ((length == 1) & (arr[starts] == _CR))
    try:
        table, invalid = _parse(piece, fmt, names, types, multiline=len(ends) < len(nl))
    except pa.ArrowInvalid as typed_error:
        try:
            table, invalid = _parse(piece, fmt, names, dict.fromkeys(types, pa.string()), len(ends) < len(nl))
        except pa.ArrowInvalid as error:
            raise _unparsable(piece, lines, ends, error) from typed_error
    wrong = np.zeros(len(ends), dtype=bool)
    fields = np.ones(len(ends), dtype=np.int64)
    if invalid:
        delims = np.flatnonzero(arr == ord(fmt.sep))
        if quotes is not None:
            delims = delims[np.searchsorted(quotes, delims) % 2 == 0]
        fields += np.bincount(np.searchsorted(ends, delims), minlength=len(ends))
        wrong = ~blank & (fields != len(names))
    good = ~blank & ~wrong
    if table.num_rows != int(good.sum()) or invalid != int(wrong.sum()):
        raise ValidationError(
            f"cannot align rows with lines {first_line}-{first_line + len(nl) - 1} "
            "(stray quote or carriage return?)",
            field="line",
            row=first_line,
        )
    bad = [
        BadRow(line, "fields", f"expected {len(names)} fields, found {found}")
        for line, found in zip(lines[wrong].tolist(), fields[wrong].tolist(), strict=True)
    ]
    return RawChunk(table, lines[good], bad, int((~blank).sum()))


def _unparsable(piece: bytes, lines: np.ndarray, ends: np.ndarray, error: Exception) -> ValidationError:
    try:
        piece.decode("utf-8")
    except UnicodeDecodeError as bad_utf8:
        line = int(lines[min(np.searchsorted(ends, bad_utf8.start), len(lines) - 1)])
        return ValidationError("is not valid UTF-8 (wrong encoding?)", field="line", row=line)
    return ValidationError(
        f"cannot parse lines {lines[0]}-{lines[-1]}: {error}", field="line", row=int(lines[0])
    )


def iter_chunks(
    path: str | Path,
    fmt: TextFormat,
    types: dict[str, pa.DataType],
    chunk_bytes: int = 64 << 20,
    on_bytes: Callable[[int], None] = lambda n: None,
) -> Iterator[RawChunk]:
    """Stream ``path`` as :class:`RawChunk` s holding the ``types`` columns (a name -> type map).

    Columns come back with the requested types, or as text for a chunk where a value did not
    parse (validation then names it). ``on_bytes`` is told how many bytes were read, for progress.

    Raises:
        ValidationError: a requested column is not in the file, a chunk is not valid UTF-8, or a
            record cannot be split at all.
    """
    path = Path(path)
    names = read_header(path, fmt)
    missing = [c for c in types if c not in names]
    if missing:
        raise ValidationError(f"not in {path.name} (columns: {', '.join(names)})", field=missing[0])
    first = fmt.header
    for piece, line in _pieces(path, fmt.quoting, chunk_bytes, on_bytes):
        if first:
            piece = piece.removeprefix(_BOM)
            cut = _first_record(piece, fmt.quoting)
            line += piece.count(b"\n", 0, cut)
            piece, first = piece[cut:], False
        if piece:
            yield _chunk(_prepare(piece, fmt), line, fmt, names, types)
