"""Feature definitions, the window semantics shared by both paths, and the derivation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from funnel.features import vectors
from funnel.features.definitions import (
    FEATURE_VERSION,
    FEATURES,
    FEATURES_BY_NAME,
    counter_specs,
    feature_version,
    item_columns,
    last_n,
)
from funnel.features.vectors import ItemMeta, compute
from funnel.features.windows import DAY, HOUR, MINUTE, WINDOWS, field_name, stale_fields, window_sums

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def test_definitions_are_well_formed():
    names = [f.name for f in FEATURES]
    assert len(names) == len(set(names))
    for f in FEATURES:
        assert f.entity in {"user", "item", "user_category", "user_creator", "user_item"}
        assert f.source in {"interactions", "impressions", "catalog"}
        assert f.window in WINDOWS
        assert all(x in FEATURES_BY_NAME for x in f.of)
    aggs = {f.aggregation for f in FEATURES}
    assert {"count", "sum", "mean", "ratio", "last_n", "distinct_count", "exists", "age_days"} <= aggs
    assert {f.window for f in FEATURES} == set(WINDOWS)


def test_version_is_a_hash_of_the_definitions():
    assert feature_version(FEATURES) == FEATURE_VERSION
    changed = (*FEATURES[:-1], dataclasses.replace(FEATURES[-1], window="30d"))
    assert feature_version(changed) != FEATURE_VERSION


def test_ttls_follow_windows():
    assert FEATURES_BY_NAME["user_click_count_1h"].key_ttl_s() == (HOUR + 10 * MINUTE + DAY) // 1000
    assert FEATURES_BY_NAME["user_positive_count_lifetime"].key_ttl_s() is None


@pytest.mark.parametrize("name", list(WINDOWS))
def test_bucket_rule_equals_the_exact_rule(name):
    """Online (bucket in window, event already applied) == offline (ts < t, ts >= lower bound)."""
    w = WINDOWS[name]
    rng = np.random.default_rng(1)
    t = T0 + rng.integers(0, 40 * DAY, 4000)
    ts = t - rng.integers(-2 * HOUR, 35 * DAY, 4000)
    for a, b in zip(ts.tolist(), t.tolist(), strict=True):
        online = a < b and w.bucket_in_window(w.bucket_start(a), b)
        assert online == w.contains(a, b)


def test_window_edges():
    w = WINDOWS["24h"]  # 8 buckets of 3h
    t = T0 + 4 * HOUR  # bucket 03:00-06:00
    assert w.lower_bound(t) == T0 + 3 * HOUR - 7 * 3 * HOUR
    assert w.contains(w.lower_bound(t), t) and not w.contains(w.lower_bound(t) - 1, t)
    assert not w.contains(t, t) and w.contains(t - 1, t)
    assert WINDOWS["lifetime"].contains(1, t) and len(WINDOWS["30d"].buckets(t)) == 30


def test_window_sums_read_only_buckets_in_window():
    t = T0 + 25 * MINUTE
    h = {
        field_name("n.click", "", "10m", T0 + 20 * MINUTE): 1.0,  # current bucket
        field_name("n.click", "", "10m", T0 - 30 * MINUTE): 2.0,  # oldest bucket inside 1h
        field_name("n.click", "", "10m", T0 - 40 * MINUTE): 4.0,  # too old
        field_name("n.click", "", "10m", T0 + 30 * MINUTE): 8.0,  # after t's bucket
        field_name("n.click", "", "1d", T0 - DAY): 16.0,  # shared by 7d and 30d
    }
    sums = window_sums({"act": h}, t)
    assert sums[("act", "n.click", "", "1h")] == 3.0
    assert sums[("act", "n.click", "", "7d")] == sums[("act", "n.click", "", "30d")] == 16.0
    assert stale_fields(h, t) == [field_name("n.click", "", "10m", T0 - 40 * MINUTE)]


def test_window_sums_follow_t_across_bucket_epochs():
    """The per-epoch memo never leaks one epoch's windows into another's (back and forth)."""
    h = {
        field_name("n.click", "", r, T0 + k * 10 * MINUTE): float(k + 1)
        for k in range(-9, 9)
        for r in ("10m",)
    }
    h.update({field_name("n.click", "", "3h", T0 + k * 3 * HOUR): 1.0 for k in range(-9, 3)})
    h.update({field_name("n.click", "", "1d", T0 + k * DAY): 1.0 for k in range(-31, 2)})

    def brute(t):
        out = {}
        for w in WINDOWS.values():
            for f, v in h.items():
                res, start = f.rpartition("|")[2].split(":")
                if res == w.res and w.bucket_in_window(int(start), t):
                    out[("act", "n.click", "", w.name)] = out.get(("act", "n.click", "", w.name), 0.0) + v
        return out

    for t in (
        T0 + 25 * MINUTE,
        T0 + 3 * HOUR,
        T0 + 25 * MINUTE,
        T0 - 5 * MINUTE,
        T0 + 2 * DAY,
        T0 + 25 * MINUTE,
    ):
        assert window_sums({"act": h}, t) == brute(t)


def test_counters_feed_every_counting_feature():
    specs = counter_specs()
    assert [s.counter for s in specs["impressions"]] == ["n.imp"]
    user_click = next(s for s in specs["interactions"] if (s.entity, s.counter) == ("user", "n.click"))
    assert set(user_click.windows) == {"1h", "24h", "7d", "30d"}
    assert all(c[1] for c in item_columns())


def test_last_n_newest_first_ties_by_item_and_strictly_before_t():
    recent = {"a": 5, "b": 7, "c": 7, "d": 9}
    assert last_n(recent, 9, 3) == ["c", "b", "a"]
    assert last_n(recent, 100, 2) == ["d", "c"]


@pytest.mark.parametrize("dense_vocab", [4096, 0])  # 0: every vocabulary takes the compact table
def test_compute_derives_ratios_crosses_and_age(dense_vocab, monkeypatch):
    monkeypatch.setattr(vectors, "_DENSE_VOCAB", dense_vocab)
    t = T0
    user = {
        ("act", "n.rating", "", "30d"): 2.0,
        ("act", "v.rating", "", "30d"): 7.0,
        ("act", "n.positive", "", "30d"): 4.0,
        ("cat", "n.positive", "sports", "30d"): 3.0,
        ("cat", "n.positive", "news", "lifetime"): 1.0,
        ("creator", "n.positive", "c1", "7d"): 2.0,
        ("creator", "n.positive", "c9", "7d"): 4.0,  # no candidate's creator: never gathered
        ("items", "n.positive", "i1", "7d"): 5.0,
        ("items", "n.positive", "i2", "7d"): 1.0,
    }
    cols = item_columns()
    m = np.zeros((2, len(cols)))
    m[0, cols.index(("stats", "n.imp", "24h"))] = 10.0
    m[0, cols.index(("stats", "n.click", "24h"))] = 2.0
    meta = ItemMeta.from_lists(np.array([t - 3 * DAY, np.nan]), [("sports", "news"), ()], ["c1", None])
    u, items = compute(t, user, {"i1": t - 5}, ["i1", "i2"], m, meta)
    assert u["user_rating_mean_30d"] == 3.5 and u["user_distinct_items_7d"] == 2
    assert u["user_recent_items"] == ["i1"] and u["user_click_count_1h"] == 0
    assert items["item_ctr_24h"].tolist() == [0.2, 0.0]
    assert items["item_age_days"].tolist() == [3.0, -1.0]
    assert items["ux_category_count_30d"].tolist() == [3, 0]
    assert items["ux_category_engaged"].tolist() == [1, 0]
    assert items["ux_category_affinity_30d"].tolist() == [0.75, 0.0]
    assert items["ux_creator_count_7d"].tolist() == [2, 0]
    assert items["ux_item_count_7d"].tolist() == [5, 1]
    assert items["ux_item_count_7d"].dtype == np.int64
