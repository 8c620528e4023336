"""Streaming features: events -> increments, idempotent replay, serving and the served log."""

from __future__ import annotations

import pytest

from funnel.core.schema import Impression, Interaction
from funnel.events.memory_log import MemoryEventLog
from funnel.features.online.memory import MemoryOnlineStore
from funnel.features.online.protocol import Increment
from funnel.features.serving import FeatureServer, ServedFeatureLog
from funnel.features.streaming import Catalog, EventFeaturizer, StreamingUpdater, event_id, prune
from funnel.features.windows import HOUR, MINUTE

T0 = 1_767_225_600_000


class DictStore:
    """A tiny dict-based OnlineStore that follows the protocol exactly."""

    def __init__(self) -> None:
        self.h: dict[str, dict[str, float]] = {}
        self.seen: set[str] = set()

    def get_many(self, keys):
        return [dict(self.h.get(k, {})) for k in keys]

    def set_many(self, rows, ttl_s=None):
        for k, r in rows.items():
            self.h[k] = dict(r)

    def apply(self, batch, dedup_ttl_s):
        n = 0
        for eid, incs in batch:
            if eid not in self.seen:
                self.seen.add(eid)
                n += 1
                for i in incs:
                    d = self.h.setdefault(i.key, {})
                    d[i.field] = d.get(i.field, 0.0) + i.amount
        return n

    def close(self):
        pass


CATALOG = Catalog(
    {"i1": ("news", "sports"), "i2": ("news",)}, {"i1": "c1", "i2": None}, {"i1": T0 - 86_400_000}
)


def events():
    return [
        Interaction("u1", "i1", "click", T0 + 1 * MINUTE, event_id="e1"),
        Interaction("u1", "i1", "rating", T0 + 2 * MINUTE, value=4.0, event_id="e2"),
        Interaction("u1", "i2", "skip", T0 + 3 * MINUTE),  # no event_id
        Impression("r1", "u1", ("i1", "i2"), (0, 1), T0),
    ]


@pytest.fixture(params=["dict", "memory"])
def store(request):
    return DictStore() if request.param == "dict" else MemoryOnlineStore()


def test_increments_of_one_click():
    incs = EventFeaturizer(CATALOG).increments(events()[0])
    assert all(isinstance(i, Increment) for i in incs)
    by_key: dict[str, list[str]] = {}
    for i in incs:
        by_key.setdefault(i.key, []).append(i.field)
    assert "n.click||10m:1767225600000" in by_key["fs2:user:u1:act"]
    assert sorted(f.split("|")[1] for f in by_key["fs2:user:u1:cat"]) == ["news"] * 2 + ["sports"] * 2
    assert by_key["fs2:user:u1:recent"] == [f"i1|{T0 + MINUTE}"]
    assert any(i.ttl_s is None for i in incs if i.key == "fs2:user:u1:life")
    imp = EventFeaturizer(CATALOG).increments(events()[3])
    buckets = {"fs2:bucket:n.imp|3h:1767225600000:stats", "fs2:bucket:n.imp|1d:1767225600000:stats"}
    assert {(i.key, i.field) for i in imp} == {(k, item) for k in buckets for item in ("i1", "i2")}


def test_events_without_id_get_a_deterministic_one():
    log = MemoryEventLog()
    log.append(events())
    recs = log.read(0, 10)
    assert [event_id(r, "events") for r in recs] == ["e1", "e2", "@events:2", "@events:3"]


def test_crash_between_apply_and_commit_does_not_double_count(store):
    log = MemoryEventLog()
    log.append(events())
    crashed = StreamingUpdater(log, store, CATALOG)
    crashed.process(log.read(0, 10))  # applied ... and the process dies before log.commit
    assert log.committed("features") == 0
    restarted = StreamingUpdater(log, store, CATALOG)
    assert restarted.run() == 4 and restarted.applied == 0  # every event replayed, none re-applied
    clean = DictStore()
    StreamingUpdater(log, clean, CATALOG, group="clean").run()
    keys = sorted(clean.h)
    assert store.get_many(keys) == clean.get_many(keys)
    assert log.committed("features") == 4


def test_serving_reads_what_streaming_wrote(store, tmp_path):
    log = MemoryEventLog()
    log.append(events())
    StreamingUpdater(log, store, CATALOG, batch_size=2).run()
    served = ServedFeatureLog(tmp_path / "served", sample_rate=1.0)
    server = FeatureServer(store, CATALOG, served_log=served)
    fv = server.read("u1", ["i1", "i2"], T0 + HOUR, request_id="req-1")
    assert fv.user["user_click_count_1h"] == 0  # 00:01 is outside the 1h window at 01:00 ...
    assert fv.user["user_click_count_24h"] == 1  # ... but inside 24h
    assert fv.user["user_rating_mean_30d"] == 4.0 and fv.user["user_skip_count_24h"] == 1
    assert fv.user["user_recent_items"] == ["i1"]
    assert fv.items["item_impressions_24h"].tolist() == [1, 1]
    assert fv.items["item_ctr_24h"].tolist() == [1.0, 0.0]
    assert fv.items["ux_category_count_7d"].tolist() == [2, 2]  # news: the click and the rating
    assert fv.items["ux_creator_engaged"].tolist() == [1, 0]
    assert fv.items["item_age_days"].tolist() == [pytest.approx(1 + 1 / 24), -1.0]
    (line,) = served.read()
    assert line["request_id"] == "req-1" and line["items"]["item_ctr_24h"] == [1.0, 0.0]


def test_served_log_samples_deterministically(tmp_path):
    log = ServedFeatureLog(tmp_path, sample_rate=0.25)
    picks = [log.sampled(f"req-{k}") for k in range(4_000)]
    assert 800 < sum(picks) < 1_200
    assert picks == [log.sampled(f"req-{k}") for k in range(4_000)]
    assert not any(ServedFeatureLog(tmp_path, 0.0).sampled(f"req-{k}") for k in range(100))
    with pytest.raises(ValueError):
        ServedFeatureLog(tmp_path, 1.5)


def test_closed_bucket_cache_gives_the_uncached_values(store):
    log = MemoryEventLog()
    log.append(events())
    updater = StreamingUpdater(log, store, CATALOG)
    updater.run()
    cached, exact = FeatureServer(store, CATALOG), FeatureServer(store, CATALOG, cache_closed=False)
    for t in (T0 + HOUR, T0 + HOUR + 1, T0 + 2 * HOUR, T0 + 30 * HOUR):
        a, b = cached.read("u1", ["i1", "i2"], t), exact.read("u1", ["i1", "i2"], t)
        assert a.to_dict() == b.to_dict()
    t = T0 + 30 * HOUR + 5 * MINUTE
    before = cached.read("u1", ["i1"], t).items["item_impressions_24h"].tolist()
    log.append([Impression("r9", "u2", ("i1",), (0,), t - 1)])  # into the open bucket: seen at once
    updater.run()
    assert cached.read("u1", ["i1"], t).items["item_impressions_24h"].tolist() == [before[0] + 1]


def test_prune_drops_only_what_no_window_can_read(store):
    log = MemoryEventLog()
    log.append([*events(), Interaction("u1", "i2", "click", T0 + 40 * HOUR, event_id="late")])
    StreamingUpdater(log, store, CATALOG).run()
    t = T0 + 40 * HOUR + 1
    server = FeatureServer(store, CATALOG, cache_closed=False)
    before = server.read("u1", ["i1", "i2"], t).to_dict()
    keys = [f"fs2:user:u1:{g}" for g in ("act", "life", "cat", "creator", "items", "recent")]
    buckets = [f"fs2:bucket:n.imp|{r}:{T0}:stats" for r in ("3h", "1d")]  # left to their TTL
    n_fields = sum(len(h) for h in store.get_many(keys))
    before_buckets = store.get_many(buckets)
    dropped = prune(store, keys + buckets, t, keep_recent=1)
    assert 0 < dropped < n_fields
    assert store.get_many(buckets) == before_buckets and all(before_buckets)
    after = server.read("u1", ["i1", "i2"], t).to_dict()
    assert after["items"] == before["items"]
    assert after["user"] == {**before["user"], "user_recent_items": ["i2"]}  # keep_recent=1
    assert store.get_many(["fs2:user:u1:life"])[0] == {"n.positive||L:0": 3.0}


def test_repeated_candidates_read_the_same_values(store):
    log = MemoryEventLog()
    log.append(events())
    StreamingUpdater(log, store, CATALOG).run()
    t = T0 + 30 * HOUR
    items = ["i2", "i1", "i2", "x", "i1"]
    a = FeatureServer(store, CATALOG).read("u1", items, t).to_dict()
    b = FeatureServer(store, CATALOG, cache_closed=False).read("u1", items, t).to_dict()
    assert a == b and a["items"]["item_impressions_7d"] == [1, 1, 1, 0, 1]


def test_fast_path_sums_give_the_per_event_result():
    """apply_sums of merged chunks == apply of every event's increments (values, TTLs, replays)."""
    evs = [
        *events(),
        Interaction("u1", "i1", "rating", T0 + 4 * MINUTE, value=0.1, event_id="w1"),
        Interaction("u1", "i1", "rating", T0 + 5 * MINUTE, value=0.2, event_id="w2"),
        Interaction("u1", "i1", "rating", T0 + 6 * MINUTE, value=0.7, event_id="w3"),
        *(Interaction("u2", "i2", "click", T0 + k * MINUTE, event_id=f"c{k}") for k in range(30)),
        *(Impression(f"r{k}", "u2", ("i1", "i2"), (0, 1), T0 + k) for k in range(2, 40)),
    ]
    fast, slow = MemoryOnlineStore(), DictStore()
    for store in (fast, slow):
        log = MemoryEventLog()
        log.append(evs)
        up = StreamingUpdater(log, store, CATALOG, batch_size=7)
        up.process(log.read(0, 20))  # applied, not committed: the run replays these
        assert up.run() == len(evs)
    assert fast.capabilities and not hasattr(slow, "capabilities")
    keys = sorted(slow.h)
    assert fast.get_many(keys) == slow.get_many(keys)
    assert all(type(v) is float for h in fast.get_many(keys) for v in h.values())


def test_reads_by_bound_index_equal_reads_by_id(store):
    log = MemoryEventLog()
    log.append([*events(), Interaction("u2", "i2", "click", T0 + 5 * HOUR, event_id="e9")])
    updater = StreamingUpdater(log, store, CATALOG)
    updater.run()
    bound = ["i2", "x", "i1"]  # "x": not in the catalogue
    by_index = FeatureServer(store, CATALOG)
    by_index.bind_items(bound)
    by_id = FeatureServer(store, CATALOG)
    for t in (T0 + HOUR, T0 + 6 * HOUR, T0 + 6 * HOUR + 1, T0 + 30 * HOUR):
        for index in ([2, 0, 1], [0, 0, 2, 1, 2], [1]):
            items = [bound[i] for i in index]
            a = by_index.read("u1", items, t, item_index=index).to_dict()
            assert a == by_id.read("u1", items, t).to_dict()
    partial = FeatureServer(store, CATALOG)  # i1 has events but is not in this numbering: skipped
    partial.bind_items(["x", "i2"], {"x": 0, "i2": 1})
    for t in (T0 + 6 * HOUR, T0 + 30 * HOUR):
        expected = by_id.read("u1", ["i2"], t).to_dict()
        assert partial.read("u1", ["i2"], t, item_index=[1]).to_dict() == expected
    t = T0 + 30 * HOUR
    a = by_index.read("u1", ["i2", "i1"], t, item_index=[0, 2])
    assert a.items["item_impressions_7d"].tolist() == [1, 1]
    assert a.items["item_age_days"].tolist() == [-1.0, 2.25]  # i2 has no publication time, i1 a day before T0
    assert a.items["ux_creator_count_30d"].tolist() == [0, 2]  # i1's creator c1 (the catalogue row)
    with pytest.raises(ValueError, match="bind_items"):
        FeatureServer(store, CATALOG).read("u1", ["i1"], t, item_index=[0])
