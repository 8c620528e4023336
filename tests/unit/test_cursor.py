"""Unit tests of the page cursor's encoding (:mod:`funnel.api.cursor`)."""

from __future__ import annotations

import base64
import zlib

import pytest

from funnel.api.cursor import MAX_SERVED, PREFIX, decode_cursor, encode_cursor
from funnel.api.routes.recommendations import RecommendationsQuery
from funnel.core.errors import ValidationError


def test_a_cursor_round_trips_its_served_ids_in_order():
    served = ["m-42", "m-7", "é-unicode", "m-42x"]
    assert decode_cursor(encode_cursor(served)) == served
    assert decode_cursor(encode_cursor([])) == []


def test_a_cursor_of_the_earlier_encoding_still_decodes():
    # clients holding a cursor from before the small-window encoding keep paging across a deploy
    served = [f"item-{i}" for i in range(25)]
    earlier = PREFIX + base64.urlsafe_b64encode(zlib.compress("\n".join(served).encode(), 9)).decode().rstrip(
        "="
    )
    assert earlier != encode_cursor(served)
    assert decode_cursor(earlier) == served


def test_a_full_cursor_fits_the_query_parameter():
    # MAX_SERVED ids of a realistic shape: the cursor must stay under the query's length cap
    served = [f"tt{9_000_000 + 7919 * i:08d}" for i in range(MAX_SERVED)]
    cursor = encode_cursor(served)
    cap = next(
        m.max_length for m in RecommendationsQuery.model_fields["cursor"].metadata if hasattr(m, "max_length")
    )
    assert len(cursor) <= cap
    assert decode_cursor(cursor) == served


def test_a_truncated_cursor_is_refused_naming_the_field():
    cursor = encode_cursor([f"item-{i}" for i in range(40)])
    with pytest.raises(ValidationError) as err:
        decode_cursor(cursor[:-6])
    assert err.value.field == "cursor"
