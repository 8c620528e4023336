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


def _record_end(buf: bytes, quoting: bool) -> tuple[int, bool]:
    """Offset just past the last newline ending a record (0 if none), and whether quotes occur."""
    end = buf.rfind(b"\n")
    if not quoting or end < 0 or b'"' not in buf:
        return end + 1, False
    quotes = np.flatnonzero(np.frombuffer(buf, dtype=np.uint8) == _QUOTE)
    while end >= 0 and np.searchsorted(quotes, end) % 2:  # inside a quoted field: step back
        end = buf.rfind(b"\n", 0, end)
    return end + 1, True


def _pieces(
    path: Path, quoting: bool, chunk_bytes: int, on_bytes: Callable[[int], None]
) -> Iterator[tuple[bytes, bool]]:
    """Yield runs of whole records, each ending in a newline, and whether they may hold quotes."""
    limit = max(8 * chunk_bytes, 256 << 20)
    carry = b""
    with open(path, "rb") as f:
        while block := f.read(chunk_bytes):
            on_bytes(len(block))
            buf = carry + block if carry else block
            cut, quoted = _record_end(buf, quoting)
            if cut == 0:
                if len(buf) > limit:
                    raise ValidationError(f"a record longer than {limit} bytes (unbalanced quote?)")
                carry = buf
                continue
            piece, carry = (buf, b"") if cut == len(buf) else (buf[:cut], buf[cut:])
            yield piece, quoted
    if carry:
        yield carry + b"\n", quoting


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
    """Offset just past the first record (the header): the first newline outside quotes."""
    quotes, start = 0, 0
    while (end := buf.find(b"\n", start)) >= 0:
        quotes += buf.count(b'"', start, end) if quoting else 0
        if quotes % 2 == 0:
            return end + 1
        start = end + 1
    return len(buf)


def read_header(path: str | Path, fmt: TextFormat) -> list[str]:
    """Column names: the file's first record when ``fmt.header``, else ``fmt.names``."""
    if not fmt.header:
        return list(fmt.names)
    with open(path, "rb") as f:
        head = f.read(1 << 20).removeprefix(_BOM)
    head = _prepare(head[: _first_record(head, fmt.quoting)], fmt)
    opts = pv.ParseOptions(delimiter=fmt.sep, quote_char='"' if fmt.quoting else False)
    return pv.read_csv(io.BytesIO(head), parse_options=opts).column_names if head.strip() else []


@dataclass
class _Layout:
    """Where the records of a chunk are: ends (newlines outside quotes), starts, source lines."""

    nl: np.ndarray
    ends: np.ndarray
    starts: np.ndarray
    lines: np.ndarray

    @classmethod
    def scan(cls, arr: np.ndarray, quotes: np.ndarray | None, first_line: int) -> _Layout:
        nl = np.flatnonzero(arr == _NL)
        if quotes is None:
            ends, lines = nl, first_line + np.arange(len(nl), dtype=np.int64)
        else:
            ends = nl[np.searchsorted(quotes, nl) % 2 == 0]
            if len(ends) == 0 or ends[-1] != len(arr) - 1:
                row = first_line + int(np.searchsorted(nl, ends[-1] + 1 if len(ends) else 0))
                raise ValidationError("quoted field never ends (unbalanced quote)", field="line", row=row)
        starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
        if quotes is not None:
            lines = first_line + np.searchsorted(nl, starts).astype(np.int64)
        return cls(nl, ends, starts, lines)

    def blank(self, arr: np.ndarray) -> np.ndarray:
        length = self.ends - self.starts
        return (length == 0) | ((length == 1) & (arr[self.starts] == _CR))

    def fields(self, arr: np.ndarray, sep: str, quotes: np.ndarray | None) -> np.ndarray:
        delims = np.flatnonzero(arr == ord(sep))
        if quotes is not None:
            delims = delims[np.searchsorted(quotes, delims) % 2 == 0]
        return 1 + np.bincount(np.searchsorted(self.ends, delims), minlength=len(self.ends))


def _chunk(
    piece: bytes,
    first_line: int,
    fmt: TextFormat,
    names: list[str],
    types: dict[str, pa.DataType],
    quoted: bool = True,
) -> tuple[RawChunk, int]:
    """Parse whole records; returns the chunk and how many newlines (source lines) it spanned.

    ``quoted=False`` promises that ``piece`` holds no quote character (saves a scan).
    """
    arr = np.frombuffer(piece, dtype=np.uint8)
    quotes = np.flatnonzero(arr == _QUOTE) if fmt.quoting and quoted else None
    quotes = quotes if quotes is not None and len(quotes) else None
    layout = _Layout.scan(arr, quotes, first_line)
    multiline = len(layout.ends) < len(layout.nl)
    try:
        table, invalid = _parse(piece, fmt, names, types, multiline)
    except pa.ArrowInvalid as typed_error:
        try:
            table, invalid = _parse(piece, fmt, names, dict.fromkeys(types, pa.string()), multiline)
        except pa.ArrowInvalid as error:
            raise _unparsable(piece, layout, error) from typed_error
    blank = layout.blank(arr)
    wrong = np.zeros(len(blank), dtype=bool)
    if invalid:
        fields = layout.fields(arr, fmt.sep, quotes)
        wrong = ~blank & (fields != len(names))
    n_blank, n_wrong = int(blank.sum()), int(wrong.sum())
    if table.num_rows != len(blank) - n_blank - n_wrong or invalid != n_wrong:
        raise _misaligned(first_line, len(layout.nl))
    bad = []
    if n_wrong:
        found = fields[wrong].tolist()
        bad = [
            BadRow(line, "fields", f"expected {len(names)} fields, found {n}")
            for line, n in zip(layout.lines[wrong].tolist(), found, strict=True)
        ]
    lines = layout.lines[~(blank | wrong)] if n_blank or n_wrong else layout.lines
    return RawChunk(table, lines, bad, len(blank) - n_blank), len(layout.nl)


def _misaligned(first_line: int, n_lines: int) -> ValidationError:
    where = f"lines {first_line}-{first_line + n_lines - 1}"
    return ValidationError(
        f"cannot align rows with {where} (stray quote or carriage return?)", field="line", row=first_line
    )


def _unparsable(piece: bytes, layout: _Layout, error: Exception) -> ValidationError:
    lines = layout.lines
    try:
        piece.decode("utf-8")
    except UnicodeDecodeError as bad_utf8:
        line = int(lines[min(np.searchsorted(layout.ends, bad_utf8.start), len(lines) - 1)])
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
    line, first = 1, True
    for piece, quoted in _pieces(path, fmt.quoting, chunk_bytes, on_bytes):
        if first:
            piece, first = piece.removeprefix(_BOM), False
            if fmt.header:
                cut = _first_record(piece, fmt.quoting)
                line += piece.count(b"\n", 0, cut)
                piece = piece[cut:]
        if piece:
            chunk, n_lines = _chunk(_prepare(piece, fmt), line, fmt, names, types, quoted)
            line += n_lines
            yield chunk
