"""Vectorised validation of canonical tables: every rule is one Arrow/NumPy pass, never a row loop.

``validate_interactions`` (and ``validate_items``, ``validate_users``) take an Arrow table whose
columns carry the canonical names (see :mod:`funnel.core.schema`) and the 1-based source line of
each row. They return the good rows cast to the canonical schema (missing optional columns filled
with nulls) and one :class:`BadRow` per bad row — the first rule the row breaks, in column order.
Python code only runs per *bad* row, to format its message.

Columns may arrive as text (a CSV parsed as strings): numbers, epoch times and ISO 8601 times are
parsed here, and a value that does not parse is reported like any other bad value.

Example:
    >>> import numpy as np, pyarrow as pa
    >>> t = pa.table({"user_id": ["u1", "", "u3", "u4"], "item_id": ["a", "b", "c", "d"],
    ...               "timestamp": [1_700_000_000_000] * 4, "type": ["click", "like", "poke", "view"],
    ...               "value": ["1.5", "2", "3", "inf"]})
    >>> good, bad = validate_interactions(t, np.array([2, 3, 4, 5]))
    >>> good.column("value").to_pylist()
    [1.5]
    >>> for b in bad: print(b)
    user_id (row 3): is required
    type (row 4): unknown event type 'poke'; known: view, click, ...
    value (row 5): must be finite
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import repeat

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from funnel.core.errors import ValidationError
from funnel.core.schema import (
    EVENT_TYPES,
    INTERACTIONS,
    ITEM_STATUSES,
    ITEMS,
    MAX_TIMESTAMP_MS,
    MIN_PUBLISHED_MS,
    MIN_TIMESTAMP_MS,
    TIMESTAMP,
    USERS,
)

Column = pa.Array | pa.ChunkedArray

TIME_UNITS = ("auto", "s", "ms", "iso")
"""How numbers or text in a time column are read: epoch seconds, epoch ms, ISO 8601, or guessed."""
_INT_RE = r"^-?[0-9]{1,18}$"
_FLOAT_RE = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)(e[+-]?[0-9]+)?$|^[+-]?(nan|inf|infinity)$"
_TIME = r"[T ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?"
_ZONE = r"(Z|[+-][0-9]{2}(:?[0-9]{2})?)"
_ISO_ZONED = rf"^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}{_TIME}{_ZONE}$"
_ISO_NAIVE = rf"^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}({_TIME})?$"
_S_LIMIT = 10**13  # |epoch seconds| beyond this are out of range anyway; clamping avoids overflow


@dataclass(frozen=True, slots=True)
class BadRow:
    """One rejected row: its 1-based ``line`` in ``file``, the ``field`` at fault and why.

    ``str(bad)`` has the :class:`~funnel.core.errors.ValidationError` form
    ``"<field> (row N): <reason>"``, prefixed with the file name when known.
    """

    line: int
    field: str
    reason: str
    file: str = ""

    def __str__(self) -> str:
        where = f"{self.file}: " if self.file else ""
        return f"{where}{self.field} (row {self.line}): {self.reason}"

    def to_error(self) -> ValidationError:
        """Return this bad row as a :class:`~funnel.core.errors.ValidationError`."""
        return ValidationError(self.reason, field=self.field, row=self.line)


Reason = str | Callable[[np.ndarray], Iterable[str]]


class RowErrors:
    """Collects bad rows rule by rule; a row keeps the first reason it was given."""

    def __init__(self, lines: np.ndarray) -> None:
        self.lines = np.asarray(lines, dtype=np.int64)
        self.bad = np.zeros(len(self.lines), dtype=bool)
        self.rows: list[BadRow] = []

    def add(self, field: str, rows: np.ndarray | pa.Array | pa.ChunkedArray, reason: Reason) -> None:
        """Flag the ``rows`` (a boolean mask, Arrow or NumPy) not flagged yet.

        ``reason`` is a string or formats one reason per row from the row indices.
        """
        if not isinstance(rows, np.ndarray):
            if not pc.any(rows).as_py():  # the common case: nothing to convert
                return
            rows = mask(rows)
        new = rows & ~self.bad
        if not new.any():
            return
        idx = np.flatnonzero(new)
        reasons = repeat(reason) if isinstance(reason, str) else reason(idx)
        pairs = zip(self.lines[idx].tolist(), reasons, strict=False)
        self.rows.extend(BadRow(line, field, r) for line, r in pairs)
        self.bad |= new

    def apply(self, table: pa.Table) -> tuple[pa.Table, list[BadRow]]:
        """The rows of ``table`` that broke no rule, and the bad rows sorted by line."""
        if self.bad.any():
            table = table.filter(pa.array(~self.bad))
        return table, sorted(self.rows, key=lambda b: b.line)


def _combine(col: Column) -> pa.Array:
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def mask(x: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean Arrow array as NumPy, nulls counting as False."""
    return np.asarray(_combine(pc.fill_null(x, False)).to_numpy(zero_copy_only=False), dtype=bool)


def _cast_locating(arr: Column, to: pa.DataType) -> tuple[pa.Array, np.ndarray]:
    """Cast; where the whole cast fails, bisect to null exactly the values that cannot be cast."""
    arr = _combine(arr)
    try:
        return pc.cast(arr, to), np.zeros(len(arr), dtype=bool)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        if len(arr) <= 1:
            return pa.nulls(len(arr), to), np.ones(len(arr), dtype=bool)
    mid = len(arr) // 2
    (a, bad_a), (b, bad_b) = _cast_locating(arr[:mid], to), _cast_locating(arr[mid:], to)
    return pa.concat_arrays([a, b]), np.concatenate([bad_a, bad_b])


def parse_numbers(text: Column, to: pa.DataType | None = None) -> tuple[Column, np.ndarray]:
    """Parse text as numbers: blanks become null, unparsable values null and flagged in the mask.

    Example:
        >>> values, bad = parse_numbers(pa.array([" 1.5", "", "x", "nan"]))
        >>> values.to_pylist(), bad.tolist()
        ([1.5, None, None, nan], [False, False, True, False])
    """
    to = to or pa.float64()
    s = pc.utf8_trim_whitespace(text)
    ok = pc.match_substring_regex(s, _INT_RE if pa.types.is_integer(to) else _FLOAT_RE, ignore_case=True)
    bad = mask(pc.greater(pc.binary_length(s), 0)) & ~mask(ok)
    values, uncastable = _cast_locating(pc.if_else(ok, s, pa.scalar(None, pa.string())), to)
    return values, bad | uncastable


def detect_time_unit(col: Column) -> str:
    """Guess how a time column is written: ``"iso"`` for text dates, else ``"s"`` or ``"ms"``.

    Text is ISO 8601 unless most of the first 10,000 values are numbers; numbers are epoch
    seconds when their median magnitude is below 1e11 (1e11 ms is 1973).

    Example:
        >>> detect_time_unit(pa.array([1365029107])), detect_time_unit(pa.array(["2013-02-28"]))
        ('s', 'iso')
    """
    sample = _combine(col)[:10_000].drop_null()
    if pa.types.is_timestamp(sample.type) or pa.types.is_date(sample.type):
        return "ms"
    if pa.types.is_string(sample.type) or pa.types.is_large_string(sample.type):
        sample = pc.utf8_trim_whitespace(sample)
        sample = sample.filter(pc.greater(pc.binary_length(sample), 0))
        numeric = mask(pc.match_substring_regex(sample, _FLOAT_RE, ignore_case=True))
        if len(numeric) and numeric.mean() < 0.5:
            return "iso"
        sample = parse_numbers(sample)[0]
    values = np.abs(np.asarray(pc.cast(sample, pa.float64()).to_numpy(zero_copy_only=False)))
    values = values[np.isfinite(values)]
    return "s" if len(values) == 0 or np.median(values) < 1e11 else "ms"


def _iso_ms(text: Column) -> tuple[pa.Array, np.ndarray]:
    s = _combine(pc.utf8_trim_whitespace(text))
    zoned = pc.match_substring_regex(s, _ISO_ZONED)
    naive = pc.match_substring_regex(s, _ISO_NAIVE)
    null = pa.scalar(None, pa.string())
    a, bad_a = _cast_locating(pc.if_else(zoned, s, null), pa.timestamp("ns", tz="UTC"))
    b, bad_b = _cast_locating(pc.if_else(naive, s, null), pa.timestamp("ns"))
    ns = pc.coalesce(pc.cast(a, pa.int64()), pc.cast(b, pa.int64()))
    bad = mask(pc.greater(pc.binary_length(s), 0)) & ~mask(pc.or_(zoned, naive))
    return pc.divide(ns, 1_000_000), bad | bad_a | bad_b


def _scale_ms(values: Column, unit: str) -> Column:
    if pa.types.is_floating(values.type):
        finite = pc.is_finite(values)
        scaled = pc.round(pc.multiply(values, 1000.0 if unit == "s" else 1.0))
        scaled = pc.max_element_wise(pc.min_element_wise(scaled, 1e16), -1e16)
        return pc.cast(pc.if_else(finite, scaled, None), pa.int64())
    values = pc.cast(values, pa.int64())
    if unit == "s":
        clamped = pc.min_element_wise(values, _S_LIMIT, skip_nulls=False)  # a null stays null
        values = pc.multiply(pc.max_element_wise(clamped, -_S_LIMIT, skip_nulls=False), 1000)
    return values


_TS_DIVISOR = {"s": None, "ms": 1, "us": 1_000, "ns": 1_000_000}


def to_epoch_ms(col: Column, unit: str = "ms") -> tuple[Column, np.ndarray]:
    """Epoch milliseconds (``int64``, nulls kept) of a time column, and the mask of unparsable rows.

    Timestamp and date columns keep their own unit; integers and floats are read as ``unit``
    (``"s"`` or ``"ms"``); text as numbers in ``unit`` or ISO 8601 (``"iso"``, UTC unless it
    carries an offset). ``"auto"`` guesses with :func:`detect_time_unit`. Non-finite numbers count
    as unparsable. Out-of-range values are clamped, never wrapped, so range checks still see them.

    Example:
        >>> ms, bad = to_epoch_ms(pa.array(["1365029107", "x", "inf", ""]), "s")
        >>> ms.to_pylist(), bad.tolist()
        ([1365029107000, None, None, None], [False, True, True, False])
        >>> to_epoch_ms(pa.array(["2013-04-03T22:45:07Z", "2013-04-03"]), "iso")[0].to_pylist()
        [1365029107000, 1364947200000]
    """
    kind = col.type
    if unit == "auto":
        unit = detect_time_unit(col)
    if pa.types.is_date(kind):
        col, kind = pc.cast(col, pa.timestamp("ms")), pa.timestamp("ms")
    if pa.types.is_timestamp(kind):
        ints = pc.cast(col, pa.int64())
        div = _TS_DIVISOR[kind.unit]
        return (_scale_ms(ints, "s") if div is None else pc.divide(ints, div)), np.zeros(len(col), bool)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        if unit == "iso":
            return _iso_ms(col)
        values, bad = parse_numbers(col, pa.float64())
    elif pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind):
        values, bad = col, np.zeros(len(col), dtype=bool)
    else:
        raise ValidationError(f"cannot read a time from {kind} values", field="timestamp")
    if unit == "iso":
        raise ValidationError(
            "holds numbers: read them with time unit 's' or 'ms', not 'iso'", field="timestamp"
        )
    ms = _scale_ms(values, unit)
    if ms.null_count == values.null_count:  # nothing became null: no non-finite number
        return ms, bad
    return ms, bad | (mask(pc.is_null(ms)) & ~mask(pc.is_null(values)))


def _texts(col: Column, prefix: str, suffix: str = "", limit: int = 40) -> Callable[[np.ndarray], list[str]]:
    def fmt(idx: np.ndarray) -> list[str]:
        return [f"{prefix}{str(v)[:limit]!r}{suffix}" for v in col.take(pa.array(idx)).to_pylist()]

    return fmt


def _column(table: pa.Table, name: str, required: bool = False) -> Column | None:
    if name in table.column_names:
        return table.column(name)
    if required:
        raise ValidationError(f"column is missing (columns: {', '.join(table.column_names)})", field=name)
    return None


def _string(col: Column | None, n: int) -> Column:
    if col is None:
        return pa.nulls(n, pa.string())
    return col if col.type == pa.string() else pc.cast(col, pa.string())


def _ids(table: pa.Table, name: str, errs: RowErrors) -> Column:
    col = _string(_column(table, name, required=True), table.num_rows)
    empty = pc.or_kleene(pc.equal(pc.binary_length(col), 0), pc.utf8_is_space(col))
    errs.add(name, pc.or_kleene(pc.is_null(col), empty), "is required")
    return col


def _time(
    table: pa.Table, name: str, errs: RowErrors, unit: str, required: bool, low: int = MIN_TIMESTAMP_MS
) -> pa.Array:
    col = _column(table, name, required=required)
    if col is None:
        return pa.nulls(table.num_rows, TIMESTAMP)
    if unit not in TIME_UNITS:
        raise ValidationError(f"unknown time unit {unit!r}; known: {', '.join(TIME_UNITS)}", field=name)
    ms, unparsable = to_epoch_ms(col, unit)
    errs.add(name, unparsable, _texts(col, "not a timestamp: "))
    if required:
        errs.add(name, pc.is_null(ms), "is required")
    out = pc.or_(pc.less_equal(ms, low), pc.greater_equal(ms, MAX_TIMESTAMP_MS))
    after = "1800-01-01" if low == MIN_PUBLISHED_MS else "1970-01-01"
    errs.add(name, out, f"out of range (epoch ms after {after} and before 2100-01-01)")
    return pc.cast(ms, TIMESTAMP)


def _number(table: pa.Table, name: str, errs: RowErrors, to: pa.DataType) -> Column:
    col = _column(table, name)
    if col is None:
        return pa.nulls(table.num_rows, to)
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        values, unparsable = parse_numbers(col, pa.float64())
        errs.add(name, unparsable, _texts(col, "not a number: "))
    else:
        values = pc.cast(col, pa.float64())
    if pa.types.is_floating(to):
        errs.add(name, pc.invert(pc.is_finite(values)), "must be finite")
        return values
    info = np.iinfo(np.dtype(str(to)))
    ok = pc.and_(pc.equal(pc.floor(values), values), pc.less_equal(values, info.max))
    errs.add(name, pc.invert(pc.and_(ok, pc.greater_equal(values, 0))), "must be a non-negative integer")
    return pc.cast(pc.if_else(ok, values, None), to)


def _event_types(table: pa.Table, errs: RowErrors) -> Column:
    col = _column(table, "type")
    if col is None:
        return pa.repeat(pa.scalar("click"), table.num_rows)
    col = _string(col, table.num_rows)
    errs.add("type", pc.is_null(col), "is required")
    unknown = pc.invert(pc.is_in(col, value_set=pa.array(EVENT_TYPES)))
    known = "; known: " + ", ".join(EVENT_TYPES)  # the wording of schema.check_event_type
    errs.add("type", unknown, _texts(col, "unknown event type ", known, limit=60))
    return col


def validate_interactions(
    table: pa.Table, line_numbers: np.ndarray, *, time_unit: str = "ms"
) -> tuple[pa.Table, list[BadRow]]:
    """Split an interactions table into good rows (``INTERACTIONS`` schema) and bad rows.

    Rules: ``user_id``/``item_id`` present and not blank; ``timestamp`` present, parsable and in
    (``MIN_TIMESTAMP_MS``, ``MAX_TIMESTAMP_MS``) once read with ``time_unit`` (integers are epoch ms
    by default; timestamp columns keep their own unit); ``type`` one of ``EVENT_TYPES`` (a missing
    column means ``click``); ``value`` a finite number or null; ``position`` a non-negative integer.

    Raises:
        ValidationError: a required column is missing, or ``time_unit`` is unknown.
    """
    errs = RowErrors(line_numbers)
    n = table.num_rows
    columns = {
        "event_id": _string(_column(table, "event_id"), n),
        "user_id": _ids(table, "user_id", errs),
        "item_id": _ids(table, "item_id", errs),
        "timestamp": _time(table, "timestamp", errs, time_unit, required=True),
        "type": _event_types(table, errs),
        "value": _number(table, "value", errs, pa.float64()),
        "request_id": _string(_column(table, "request_id"), n),
        "position": _number(table, "position", errs, pa.int32()),
    }
    return errs.apply(pa.Table.from_arrays(list(columns.values()), schema=INTERACTIONS))


def _str_list(table: pa.Table, name: str, sep: str) -> Column:
    col = _column(table, name)
    target = pa.list_(pa.string())
    if col is None:
        return pa.nulls(table.num_rows, target)
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        col = pc.if_else(
            pc.equal(pc.binary_length(col), 0), pa.scalar([], target), pc.split_pattern(col, sep)
        )
    return col if col.type == target else pc.cast(col, target)


def _attributes(table: pa.Table, errs: RowErrors) -> Column:
    col = _string(_column(table, "attributes"), table.num_rows)
    is_obj = pc.match_substring_regex(col, r"(?s)^\s*\{.*\}\s*$")
    errs.add("attributes", pc.invert(is_obj), "must be a JSON object")
    return col


def validate_items(
    table: pa.Table, line_numbers: np.ndarray, *, time_unit: str = "ms", list_sep: str = "|"
) -> tuple[pa.Table, list[BadRow]]:
    """Split a catalogue table into good rows (``ITEMS`` schema) and bad rows.

    Rules: ``item_id`` present and not blank; ``published_at`` null or after 1800-01-01 (read with
    ``time_unit``); ``status`` one of ``ITEM_STATUSES`` (null means ``listed``); ``attributes`` null
    or a JSON object. Text ``categories``/``tags`` are split on ``list_sep``.

    Example:
        >>> import numpy as np, pyarrow as pa
        >>> t = pa.table({"item_id": ["a", "b"], "status": ["listed", "gone"],
        ...               "categories": ["Drama|War", ""]})
        >>> good, bad = validate_items(t, np.array([2, 3]))
        >>> good.column("categories").to_pylist(), [str(b) for b in bad]
        ([['Drama', 'War']], ["status (row 3): must be one of ('listed', 'unlisted')"])
    """
    errs = RowErrors(line_numbers)
    n = table.num_rows
    item_id = _ids(table, "item_id", errs)
    published = _time(table, "published_at", errs, time_unit, required=False, low=MIN_PUBLISHED_MS)
    status = pc.fill_null(_string(_column(table, "status"), n), "listed")
    bad_status = pc.invert(pc.is_in(status, value_set=pa.array(ITEM_STATUSES)))
    errs.add("status", bad_status, f"must be one of {ITEM_STATUSES}")
    columns = [
        item_id,
        _string(_column(table, "title"), n),
        _string(_column(table, "description"), n),
        _str_list(table, "categories", list_sep),
        _str_list(table, "tags", list_sep),
        _string(_column(table, "creator_id"), n),
        published,
        status,
        _attributes(table, errs),
    ]
    return errs.apply(pa.Table.from_arrays(columns, schema=ITEMS))


def validate_users(
    table: pa.Table, line_numbers: np.ndarray, *, time_unit: str = "ms"
) -> tuple[pa.Table, list[BadRow]]:
    """Split a users table into good rows (``USERS`` schema) and bad rows.

    Rules: ``user_id`` present and not blank; ``created_at`` null or in range; ``attributes`` null
    or a JSON object.
    """
    errs = RowErrors(line_numbers)
    columns = [
        _ids(table, "user_id", errs),
        _time(table, "created_at", errs, time_unit, required=False),
        _attributes(table, errs),
    ]
    return errs.apply(pa.Table.from_arrays(columns, schema=USERS))


VALIDATORS: dict[str, Callable[..., tuple[pa.Table, list[BadRow]]]] = {
    "interactions": validate_interactions,
    "items": validate_items,
    "users": validate_users,
}
"""Validator of each table kind, by the kind names the importers use."""
