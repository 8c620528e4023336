"""Vectorised validation of canonical tables: rules, casts, messages, one BadRow per bad row."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import numpy as np
import pyarrow as pa
import pytest

from funnel.core.errors import ValidationError
from funnel.core.schema import INTERACTIONS, ITEMS, USERS, Interaction
from funnel.data.validation import (
    BadRow,
    detect_time_unit,
    parse_numbers,
    to_epoch_ms,
    validate_interactions,
    validate_items,
    validate_users,
)

T0 = 1_700_000_000_000


def lines(n: int, start: int = 2) -> np.ndarray:
    return np.arange(start, start + n)


def events(**columns: list) -> pa.Table:
    n = len(next(iter(columns.values())))
    base = {"user_id": ["u"] * n, "item_id": ["i"] * n, "timestamp": [T0] * n}
    return pa.table(base | columns)


def as_ms(table: pa.Table, column: str = "timestamp") -> list[int | None]:
    return table.column(column).cast(pa.int64()).to_pylist()


def test_good_rows_come_back_in_the_canonical_schema() -> None:
    good, bad = validate_interactions(events(user_id=["a", "b"]), lines(2))
    assert bad == [] and good.schema == INTERACTIONS
    assert good.column("type").to_pylist() == ["click", "click"]  # no type column: click
    assert good.column("value").null_count == 2 and good.column("event_id").null_count == 2


def test_ids_are_cast_to_strings_and_blank_ids_rejected() -> None:
    table = events(user_id=pa.array([7, None, 9]), item_id=["0042", "x", "  "])
    good, bad = validate_interactions(table, lines(3))
    assert good.column("user_id").to_pylist() == ["7"] and good.column("item_id").to_pylist() == ["0042"]
    assert [str(b) for b in bad] == ["user_id (row 3): is required", "item_id (row 4): is required"]


def test_one_bad_row_per_row_first_rule_wins() -> None:
    table = events(user_id=["", "u"], timestamp=[-1, -1], value=[float("nan"), 1.0])
    _, bad = validate_interactions(table, np.array([10, 11]))
    assert [(b.line, b.field) for b in bad] == [(10, "user_id"), (11, "timestamp")]


def test_messages_match_the_core_error_format() -> None:
    _, [bad] = validate_interactions(events(type=["poke"]), np.array([3]))
    with pytest.raises(ValidationError) as core:
        Interaction.from_dict({"user_id": "u", "item_id": "i", "type": "poke", "timestamp": T0}, row=3)
    assert str(bad) == str(bad.to_error()) == str(core.value)
    assert str(BadRow(5, "value", "must be finite", "r.dat")) == "r.dat: value (row 5): must be finite"


def test_timestamps_range_and_nulls() -> None:
    table = events(timestamp=pa.array([T0, None, 0, 4_102_444_800_000, 1], pa.int64()))
    good, bad = validate_interactions(table, lines(5))
    assert as_ms(good) == [T0, 1]
    assert [(b.line, b.reason[:12]) for b in bad] == [
        (3, "is required"),
        (4, "out of range"),
        (5, "out of range"),
    ]


@pytest.mark.parametrize(
    ("column", "unit"),
    [
        (pa.array([1_700_000_000], pa.timestamp("s")), "ms"),
        (pa.array([1_700_000_000_000_000_000], pa.timestamp("ns", tz="America/New_York")), "ms"),
        (pa.array([1_700_000_000_000], pa.int64()), "ms"),
        (pa.array([1_700_000_000], pa.int32()), "s"),
        (pa.array([1_700_000_000.0]), "s"),
        (pa.array(["1700000000"]), "s"),
        (pa.array([" 1700000000000 "]), "auto"),
        (pa.array(["2023-11-14T22:13:20Z"]), "iso"),
        (pa.array(["2023-11-14T23:13:20+01:00"]), "iso"),
        (pa.array(["2023-11-14 22:13:20.000"]), "auto"),
    ],
)
def test_time_columns_in_any_form(column: pa.Array, unit: str) -> None:
    good, bad = validate_interactions(events(timestamp=column), lines(1), time_unit=unit)
    assert bad == [] and as_ms(good) == [T0]


def test_dates_and_unparsable_times() -> None:
    ms, bad = to_epoch_ms(pa.array([date(2020, 1, 2)]))
    assert ms.to_pylist() == [1_577_923_200_000] and not bad.any()
    table = events(timestamp=["2023-11-14", "2023-02-30", "soon", "", "1e400"])
    good, bad_rows = validate_interactions(table, lines(5), time_unit="iso")
    assert as_ms(good) == [1_699_920_000_000]
    assert [(b.line, b.reason) for b in bad_rows] == [
        (3, "not a timestamp: '2023-02-30'"),
        (4, "not a timestamp: 'soon'"),
        (5, "is required"),
        (6, "not a timestamp: '1e400'"),
    ]


def test_unknown_time_unit_and_missing_column() -> None:
    with pytest.raises(ValidationError, match="unknown time unit"):
        validate_interactions(events(user_id=["u"]), lines(1), time_unit="days")
    with pytest.raises(ValidationError, match=r"^item_id: column is missing"):
        validate_interactions(pa.table({"user_id": ["u"], "timestamp": [T0]}), lines(1))


def test_event_types() -> None:
    good, bad = validate_interactions(events(type=["like", None, "Like", "rating"]), lines(4))
    assert good.column("type").to_pylist() == ["like", "rating"]
    assert [(b.line, b.reason.split(";")[0]) for b in bad] == [
        (3, "is required"),
        (4, "unknown event type 'Like'"),
    ]


def test_values_as_text_or_numbers() -> None:
    table = events(value=["1.5", "", "abc", "nan", "-inf", " 2 ", "1e3"])
    good, bad = validate_interactions(table, lines(7))
    assert good.column("value").to_pylist() == [1.5, None, 2.0, 1000.0]
    assert [(b.line, b.reason) for b in bad] == [
        (4, "not a number: 'abc'"),
        (5, "must be finite"),
        (6, "must be finite"),
    ]
    good, bad = validate_interactions(events(value=pa.array([1, 2], pa.int8())), lines(2))
    assert good.column("value").type == pa.float64() and bad == []


def test_positions() -> None:
    table = events(position=pa.array([0, 3, -1, None, 2.5]), request_id=["r"] * 5)
    good, bad = validate_interactions(table, lines(5))
    assert good.column("position").to_pylist() == [0, 3, None] and good.column("position").type == pa.int32()
    assert [(b.line, b.field) for b in bad] == [(4, "position"), (6, "position")]


def test_parse_numbers_and_detect_time_unit() -> None:
    values, bad = parse_numbers(pa.array(["12", "x", "-3", "1.5"]), pa.int64())
    assert values.to_pylist() == [12, None, -3, None] and bad.tolist() == [False, True, False, True]
    assert detect_time_unit(pa.array(["1365029107", "oops", "1365029108"])) == "s"
    assert detect_time_unit(pa.array([1_365_029_107_000])) == "ms"
    assert detect_time_unit(pa.array(["2013-02-28", "2013-03-01", "1"])) == "iso"


def test_large_tables_are_validated_without_row_loops() -> None:
    n = 300_000
    rng = np.random.default_rng(0)
    value = rng.random(n)
    value[::1000] = np.nan
    table = events(user_id=[f"u{i}" for i in range(n)], value=value)
    good, bad = validate_interactions(table.replace_schema_metadata(), np.arange(1, n + 1))
    assert good.num_rows == n - 300 and [b.line for b in bad[:2]] == [1, 1001]


# --- items and users ------------------------------------------------------------------------------


def test_items() -> None:
    table = pa.table(
        {
            "item_id": ["a", "b", "", "d", "e", "f", "g"],
            "title": ["A", None, "C", "D", "E", "F", "G"],
            "categories": ["Drama|War", "", "x", "y", "z", None, None],
            "published_at": ["2001-01-01", None, None, "1799-10-05", "1962-10-05", None, None],
            "status": ["listed", None, None, None, "listed", "unlisted", "gone"],
            "attributes": ['{"age_rating": 12}', None, None, None, None, "[1]", None],
        }
    )
    good, bad = validate_items(table, lines(7), time_unit="iso")
    assert good.schema == ITEMS and good.column("item_id").to_pylist() == ["a", "b", "e"]
    assert good.column("categories").to_pylist() == [["Drama", "War"], [], ["z"]]
    assert good.column("status").to_pylist() == ["listed", "listed", "listed"]  # null means listed
    assert good.column("published_at")[2].as_py() == datetime(1962, 10, 5, tzinfo=UTC)  # old films are fine
    assert good.column("published_at")[0].as_py() == datetime(2001, 1, 1, tzinfo=UTC)
    assert json.loads(good.column("attributes")[0].as_py()) == {"age_rating": 12}
    assert [(b.line, b.field) for b in bad] == [
        (4, "item_id"),
        (5, "published_at"),  # before 1800: outside the valid range
        (7, "attributes"),
        (8, "status"),
    ]


def test_items_with_list_columns() -> None:
    tags = pa.array([["x", "y"], None], pa.list_(pa.large_string()))
    good, bad = validate_items(pa.table({"item_id": ["a", "b"], "tags": tags}), lines(2))
    assert bad == [] and good.column("tags").to_pylist() == [["x", "y"], None]


def test_users() -> None:
    table = pa.table(
        {"user_id": ["u1", ""], "created_at": [T0, T0], "attributes": ['{"country": "FR"}', None]}
    )
    good, bad = validate_users(table, lines(2))
    assert good.schema == USERS and good.column("user_id").to_pylist() == ["u1"]
    assert [str(b) for b in bad] == ["user_id (row 3): is required"]
