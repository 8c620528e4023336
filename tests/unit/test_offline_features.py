"""Offline features: the date-partitioned lake, point-in-time correctness, materialisation."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from funnel.core.schema import Impression, Interaction
from funnel.data.synthetic import SyntheticConfig, generate
from funnel.events.memory_log import MemoryEventLog
from funnel.features.definitions import FEATURES
from funnel.features.materialize import materialize
from funnel.features.offline import LAKE_DIR, OfflineStore, compact, write_partitioned
from funnel.features.online.memory import MemoryOnlineStore
from funnel.features.serving import FeatureServer
from funnel.features.streaming import Catalog
from funnel.features.windows import DAY, HOUR

T = 1_767_225_600_000 + 5 * HOUR  # label timestamp 2026-01-01T05:00:00Z


def rows(*triples):
    return pa.table({k: [t[i] for t in triples] for i, k in enumerate(("user_id", "item_id", "timestamp"))})


@pytest.fixture
def lake(tmp_path):
    log = MemoryEventLog()
    log.append([
        Interaction("u1", "i1", "click", T - 1),  # 1 ms before: counts
        Interaction("u1", "i2", "click", T + 1_000),  # one second after the label: excluded
        Interaction("u1", "i3", "click", T),  # exactly at t: excluded (strictly before)
        Interaction("u1", "i4", "watch", T - 2 * DAY, value=0.5),
        Impression("r1", "u1", ("i1", "i2"), (0, 1), T - HOUR),
        Impression("r2", "u1", ("i1",), (0,), T + 1_000),
    ])  # fmt: skip
    assert compact(log, tmp_path) == 6
    return tmp_path, log


def test_event_after_the_label_timestamp_is_excluded(lake):
    root, _ = lake
    out = OfflineStore(root).get_historical_features(rows(("u1", "i1", T), ("u1", "i2", T + 1_001)))
    first, later = out.to_pylist()
    assert first["user_click_count_1h"] == 1  # only the click 1 ms before t
    assert first["user_recent_items"] == ["i1", "i4"]
    assert first["item_impressions_24h"] == 1 and first["item_clicks_24h"] == 1
    assert first["item_ctr_24h"] == 1.0
    assert later["user_click_count_1h"] == 3 and later["user_recent_items"][:2] == ["i2", "i3"]
    assert later["item_impressions_24h"] == 1  # i2 shown once, at T - 1h


def test_windows_on_the_offline_side(lake):
    root, _ = lake
    out = OfflineStore(root).get_historical_features(rows(("u1", "i4", T))).to_pylist()[0]
    assert out["user_watch_count_24h"] == 0 and out["user_watch_count_7d"] == 1
    assert out["user_positive_count_lifetime"] == 2 and out["user_distinct_items_7d"] == 2
    assert out["ux_item_count_7d"] == 1 and out["item_age_days"] == -1.0  # no catalogue


def test_lake_is_partitioned_by_date_and_compaction_is_idempotent(lake):
    root, log = lake
    parts = sorted(p.relative_to(root / LAKE_DIR).as_posix() for p in (root / LAKE_DIR).rglob("*.parquet"))
    assert parts == [
        "impressions/date=2026-01-01/part-00000000000000000000.parquet",
        "interactions/date=2025-12-30/part-00000000000000000000.parquet",
        "interactions/date=2026-01-01/part-00000000000000000000.parquet",
    ]
    assert compact(log, root) == 0  # nothing new
    log.append([Interaction("u2", "i1", "view", T)])
    start = log.committed("features_lake")
    assert compact(log, root) == 1 and log.committed("features_lake") == start + 1
    log.commit("features_lake", start)  # "crash" after writing, before committing: the rerun
    # rewrites the same part file (named by its first offset) instead of adding a copy
    assert compact(log, root) == 1
    out = OfflineStore(root).get_historical_features(rows(("u2", "i1", T + 1)))
    assert out.column("user_view_count_1h").to_pylist() == [1]  # not 2


def test_materialized_online_store_matches_offline(tmp_path):
    ds = generate(SyntheticConfig(n_users=40, n_items=60, n_interactions=3_000, seed=3))
    write_partitioned(tmp_path, "interactions", ds.interactions, "bulk")
    write_partitioned(tmp_path, "impressions", ds.impressions, "bulk")
    offline = OfflineStore(tmp_path, ds.items)
    store = MemoryOnlineStore()
    assert materialize(offline, store, batch_keys=50, progress=False) > 100
    t = ds.config.end_ms + 1  # after every event
    users = ds.users.column("user_id").to_pylist()[:5]
    items = ds.items.column("item_id").to_pylist()[:12]
    table = rows(*((u, i, t) for u in users for i in items))
    expected = offline.get_historical_features(table).to_pylist()
    server = FeatureServer(store)  # item metadata from the materialised meta hashes
    with_catalog = FeatureServer(store, Catalog.from_items(ds.items))
    k = 0
    for u in users:
        fv, fv2 = server.read(u, items, t), with_catalog.read(u, items, t)
        assert fv.to_dict() == fv2.to_dict()
        for j in range(len(items)):
            got = {**fv.user, **{n: v[j].item() for n, v in fv.items.items()}}
            for f in FEATURES:
                assert got[f.name] == pytest.approx(expected[k][f.name], abs=1e-6), f.name
            k += 1


def test_materialized_with_now_keeps_the_buckets_serving_sums(tmp_path):
    """``now`` drops unreadable buckets but keeps the finer item buckets of the open coarse ones."""
    ds = generate(SyntheticConfig(n_users=40, n_items=60, n_interactions=10_000, seed=5))
    ts = ds.impressions["timestamp"].cast(pa.int64()).to_numpy()
    t = int(ts[(ts % DAY > 9 * HOUR)].max()) + 1  # late in a day: the open 1d bucket sums 3h ones
    for name in ("interactions", "impressions"):  # the lake as it stood at t
        table = getattr(ds, name)
        write_partitioned(tmp_path, name, table.filter(pc.less(table["timestamp"].cast(pa.int64()), t)), "b")
    offline = OfflineStore(tmp_path, ds.items)
    store = MemoryOnlineStore()
    materialize(offline, store, now=t, progress=False)
    users = ds.users.column("user_id").to_pylist()[:5]
    items = ds.items.column("item_id").to_pylist()[:30]
    expected = offline.get_historical_features(rows(*((u, i, t) for u in users for i in items))).to_pylist()
    server, k, nonzero = FeatureServer(store, Catalog.from_items(ds.items)), 0, 0
    for u in users:
        fv = server.read(u, items, t)
        for j in range(len(items)):
            got = {**fv.user, **{n: v[j].item() for n, v in fv.items.items()}}
            for f in FEATURES:
                assert got[f.name] == pytest.approx(expected[k][f.name], abs=1e-6), f.name
            nonzero += got["item_impressions_7d"] > got["item_impressions_24h"] > 0
            k += 1
    assert nonzero  # items with counts in the open buckets and in closed ones were compared
