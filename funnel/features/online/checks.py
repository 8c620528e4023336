"""Input validation shared by the online stores, so every backend rejects the same input.

Example:
    >>> check_key("fs2:user:1:act")
    'fs2:user:1:act'
    >>> check_ttl(None), check_value(3, "amount")
    (None, 3.0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from itertools import chain, repeat

import numpy as np

from funnel.core.errors import ValidationError
from funnel.features.online.protocol import KEY_FORMAT_VERSION, Increment, KeySums

KEY_PREFIX = f"fs{KEY_FORMAT_VERSION}:"
"""Every key the stores accept starts with this (it is what :func:`feature_key` builds)."""


def check_key(key: object, field: str = "keys") -> str:
    """Return ``key`` if it is a current-format feature key, else raise ``ValidationError``."""
    if not isinstance(key, str) or not key.startswith(KEY_PREFIX):
        raise ValidationError(
            f"must be a key built by feature_key() (starting with {KEY_PREFIX!r}), got {key!r}", field=field
        )
    return key


def check_ttl(ttl_s: object, field: str = "ttl_s", optional: bool = True) -> int | None:
    """Return ``ttl_s`` if it is a positive int (or ``None`` when ``optional``); else raise."""
    if ttl_s is None and optional:
        return None
    if isinstance(ttl_s, bool) or not isinstance(ttl_s, int) or ttl_s <= 0:
        raise ValidationError(f"must be a positive number of seconds, got {ttl_s!r}", field=field)
    return ttl_s


def check_value(value: object, field: str) -> float:
    """Return ``value`` as a finite float, else raise ``ValidationError``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValidationError(f"must be a finite number, got {value!r}", field=field)
    return float(value)


def check_rows(rows: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Validate ``set_many`` rows: feature keys, string fields, finite values."""
    out: dict[str, dict[str, float]] = {}
    for key, fields in rows.items():
        check_key(key, "rows")
        out[key] = {}
        for name, value in fields.items():
            if not isinstance(name, str):
                raise ValidationError(f"field names must be strings, got {name!r}", field="rows")
            out[key][name] = check_value(value, f"rows[{key!r}][{name!r}]")
    return out


def check_batch(batch: Sequence[tuple[str, Sequence[Increment]]]) -> None:
    """Validate an ``apply`` batch: non-empty string event ids and well-formed increments."""
    for row, (event_id, increments) in enumerate(batch, start=1):
        if not isinstance(event_id, str) or not event_id:
            raise ValidationError("must be a non-empty string", field="event_id", row=row)
        for inc in increments:
            if not isinstance(inc, Increment):
                raise ValidationError(
                    f"must be an Increment, got {type(inc).__name__}", field="batch", row=row
                )
            check_key(inc.key, "key")
            if not isinstance(inc.field, str):
                raise ValidationError(f"must be a string, got {inc.field!r}", field="field", row=row)
            check_value(inc.amount, "amount")
            check_ttl(inc.ttl_s)


def check_keys(keys: Sequence[str]) -> None:
    """``check_key`` every key (one fast pass; the slow one only to name a bad key)."""
    try:
        ok = all(map(str.startswith, keys, repeat(KEY_PREFIX)))  # TypeError for a non-str key
    except TypeError:
        ok = False
    if not ok:
        for key in keys:
            check_key(key)


def check_fields(fields: Sequence[str], what: str = "fields") -> None:
    """Raise ``ValidationError`` unless every field name is a string."""
    if not set(map(type, fields)) <= {str} and not all(isinstance(f, str) for f in fields):
        raise ValidationError("field names must be strings", field=what)


def check_sums(event_ids: Sequence[str], sums: KeySums) -> bool:
    """Validate an ``apply_sums`` call as :func:`check_batch` validates ``apply``'s increments.

    Returns whether every amount is a plain ``float`` already (no conversion needed).
    """
    for row, event_id in enumerate(event_ids, start=1):
        if not isinstance(event_id, str) or not event_id:
            raise ValidationError("must be a non-empty string", field="event_id", row=row)
    check_keys(list(sums))
    rows = list(sums.values())
    for ttl in {ttl for ttl, _, _ in rows}:
        check_ttl(ttl)
    fields = [f for _, f, _ in rows]
    amounts = [a for _, _, a in rows]
    if any(map(int.__ne__, map(len, fields), map(len, amounts))):
        raise ValidationError("fields and amounts differ in length", field="sums")
    check_fields(list(chain.from_iterable(fields)), "field")
    flat = list(chain.from_iterable(amounts))
    plain = set(map(type, flat)) <= {float}
    if not plain:
        for value in flat:
            check_value(value, "amount")
    if flat and not np.isfinite(np.asarray(flat, dtype=np.float64)).all():
        for value in flat:
            check_value(value, "amount")
    return plain
