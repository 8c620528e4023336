import json

import pyarrow as pa
import pytest

from funnel.core.errors import ValidationError
from funnel.data.tables import to_canonical


def test_dict_of_columns_with_dict_attributes():
    users = to_canonical(
        "users",
        {"user_id": ["u1", "u2", "u3"], "attributes": [{"country": "DE"}, None, {"age_bucket": "18-24"}]},
    )
    assert users.num_rows == 3
    assert [None if a is None else json.loads(a) for a in users.column("attributes").to_pylist()] == [
        {"country": "DE"},
        None,
        {"age_bucket": "18-24"},
    ]


def test_rows_are_numbered_from_one_and_all_listed():
    table = pa.table({"user_id": ["a", "b", "c"], "item_id": ["x", "", "z"], "timestamp": [1, 2, -5]})
    with pytest.raises(ValidationError) as info:
        to_canonical("interactions", table, time_unit="s")
    message = str(info.value)
    assert message.startswith("2 bad rows")
    assert "item_id (row 2): is required" in message and "timestamp (row 3)" in message
    assert (info.value.field, info.value.row) == ("item_id", 2)


def test_seconds_milliseconds_and_iso_agree():
    expected = 1_700_000_000_000
    for column in ([1_700_000_000], [expected], ["2023-11-14T22:13:20Z"]):
        t = to_canonical("interactions", {"user_id": ["u"], "item_id": ["i"], "timestamp": column})
        assert t.column("timestamp").cast(pa.int64())[0].as_py() == expected


def test_not_a_table_is_a_clear_error():
    with pytest.raises(ValidationError, match="table: expected a pandas DataFrame or an Arrow table"):
        to_canonical("items", [("a", "b")])
