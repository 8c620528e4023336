"""Quality monitors on a hand-computed example (every number below is worked out in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from funnel.core.schema import ITEMS, Impression, Interaction
from funnel.monitoring.frame import Catalogue, EventFrame
from funnel.monitoring.quality import (
    DAY_MS,
    QualityMonitor,
    category_entropy,
    coverage,
    ctr,
    exposure_gini,
    new_item_share,
    source_contribution,
)

T = 1_767_225_600_000


def catalogue() -> Catalogue:
    # a..f; e unlisted -> 5 listed (a, b, c, d, f)
    rows = {
        "a": (("x",), T - 30 * DAY_MS, "listed"),
        "b": (("y",), T - 1 * DAY_MS, "listed"),
        "c": (("x", "y"), T - 10 * DAY_MS, None),
        "d": ((), None, "listed"),
        "e": (("x",), T - 3 * DAY_MS, "unlisted"),
        "f": (("z",), T - 2 * DAY_MS, "listed"),
    }
    table = pa.table(
        {
            "item_id": list(rows),
            "categories": [list(v[0]) for v in rows.values()],
            "published_at": pa.array([v[1] for v in rows.values()], pa.int64()).cast(
                pa.timestamp("ms", "UTC")
            ),
            "status": [v[2] for v in rows.values()],
        }
    )
    full = {
        f.name: table.column(f.name) if f.name in table.column_names else pa.nulls(6, f.type) for f in ITEMS
    }
    return Catalogue.from_items(pa.table(full, schema=ITEMS))


def events() -> list:
    return [
        Impression("r1", "u1", ("a", "b"), (0, 1), T, sources=("als", "trending")),
        Impression("r2", "u2", ("a", "c"), (0, 1), T + 1_000, sources=("als", "als")),
        Impression("r3", "u3", ("b", "d", "e"), (0, 1, 2), T + 2_000),  # no sources: "unknown"
        Interaction("u1", "b", "click", T + 10, request_id="r1"),
        Interaction("u2", "a", "click", T + 1_010, request_id="r2"),
        Interaction("u2", "a", "click", T + 1_020, request_id="r2"),  # same slot again: still one
        Interaction("u2", "a", "view", T + 1_030, request_id="r2"),  # not a click
        Interaction("u9", "f", "click", T + 50),  # no request id: unattributed
        Interaction("u3", "x", "click", T + 2_050, request_id="r3"),  # not on that page: unattributed
    ]


def test_frame_flattens_slots_and_attributes_clicks() -> None:
    f = EventFrame.from_events(events())
    assert [f.items[i] for i in f.slot_item] == ["a", "b", "a", "c", "b", "d", "e"]
    assert f.slot_list.tolist() == [0, 0, 1, 1, 2, 2, 2]
    assert f.slot_clicked.tolist() == [False, True, True, False, False, False, False]
    assert [f.sources[s] for s in f.slot_source] == ["als", "trending", "als", "als"] + ["unknown"] * 3
    assert f.unattributed_clicks == 2 and len(f.click_ts) == 5


def test_snapshot_by_hand() -> None:
    snap = QualityMonitor(EventFrame.from_events(events()), catalogue()).at(T, T + 3_000)
    assert (snap.pages, snap.slots, snap.clicks) == (3, 7, 2)
    assert snap.ctr == pytest.approx(2 / 7)
    assert snap.coverage == pytest.approx(4 / 5)  # a, b, c, d of 5 listed (e unlisted, f unserved)
    # listed counts a2 b2 c1 d1 f0 -> sorted 0 1 1 2 2: 2*(0+2+3+8+10)/(5*6) - 6/5 = 1/3
    assert snap.exposure_gini == pytest.approx(1 / 3)
    # r1 {x .5, y .5}: 1 bit; r2 a(x) + c(x/2, y/2) = (.75, .25): 0.811278; r3 b(y) e(x), d none: 1 bit
    h2 = -(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25))
    assert snap.category_entropy_bits == pytest.approx((1 + h2 + 1) / 3)
    # new (< 7 days): b twice (1 d), e (3 d); a 30 d, c 10 d, d unknown -> 3 of 7
    assert snap.new_item_share == pytest.approx(3 / 7)
    s = snap.sources
    assert (s["als"].slots, s["als"].clicks, s["als"].ctr, s["als"].click_share) == (3, 1, 1 / 3, 0.5)
    assert (s["trending"].slots, s["trending"].clicks, s["trending"].click_share) == (1, 1, 0.5)
    assert (s["unknown"].slots, s["unknown"].clicks, s["unknown"].click_share) == (3, 0, 0.0)


def test_window_and_series() -> None:
    monitor = QualityMonitor(EventFrame.from_events(events()), catalogue())
    first_two = monitor.at(T, T + 1_001)  # r1 and r2
    assert (first_two.pages, first_two.slots, first_two.clicks) == (2, 4, 2)
    assert first_two.coverage == pytest.approx(3 / 5)
    series = monitor.series(window_ms=1_000, step_ms=1_000)
    assert [(s.start_ms - T, s.end_ms - T, s.slots) for s in series] == [(1, 1_001, 2), (1_001, 2_001, 3)]
    assert monitor.at(T - 10_000, T).slots == 0 and math.isnan(monitor.at(T - 10_000, T).ctr)


def test_functions_edge_cases() -> None:
    assert math.isnan(ctr(np.zeros(0, bool)))
    assert exposure_gini(np.array([5, 5, 5])) == 0.0
    assert exposure_gini(np.array([0] * 99 + [1])) == pytest.approx(0.99)
    assert math.isnan(exposure_gini(np.zeros(3)))
    assert coverage(np.array([-1, 0, 0]), np.array([True, True])) == 0.5
    assert category_entropy(np.array([0, 0, 0, 0]), [("a",), ("b",), ("c",), ("d",)]) == pytest.approx(2.0)
    assert math.isnan(category_entropy(np.array([0]), [()]))
    ts = np.array([10 * DAY_MS, 10 * DAY_MS])
    assert new_item_share(ts, np.array([9.5 * DAY_MS, np.nan]), 7 * DAY_MS) == 0.5
    stats = source_contribution(np.array([0, 1, 1]), np.array([False, True, False]), ["a", "b", "never"])
    assert set(stats) == {"a", "b"} and stats["b"].ctr == 0.5 and stats["b"].click_share == 1.0


def test_without_catalogue_the_served_items_are_the_universe() -> None:
    empty = Catalogue([], np.zeros(0, bool), [], np.zeros(0))
    snap = QualityMonitor(EventFrame.from_events(events()), empty).at(T, T + 3_000)
    assert math.isnan(snap.coverage) and math.isnan(snap.category_entropy_bits)
    # served counts a2 b2 c1 d1 e1 -> sorted 1 1 1 2 2: 2*(1+2+3+8+10)/(5*7) - 6/5
    assert snap.exposure_gini == pytest.approx(2 * 24 / 35 - 6 / 5)


def test_impression_sources_validated_and_stored(tmp_path) -> None:
    from funnel.core.errors import ValidationError
    from funnel.events.file_log import FileEventLog

    data = {"request_id": "r", "user_id": "u", "item_ids": ["a", "b"], "timestamp": T}
    imp = Impression.from_dict({**data, "sources": ["als", "trending"]})
    assert imp.sources == ("als", "trending") and imp.to_dict()["sources"] == ["als", "trending"]
    for bad in (["als"], ["als", ""], "als,trending"):
        with pytest.raises(ValidationError, match="sources"):
            Impression.from_dict({**data, "sources": bad})
    with FileEventLog(tmp_path) as log:
        log.append([imp, Impression.from_dict(data)])
        assert [r.event for r in log.read(0, 2)] == [imp, Impression.from_dict(data)]
