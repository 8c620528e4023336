import json

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

from funnel.core.errors import ConfigError
from funnel.retrieval.merge import MergedCandidates
from funnel.retrieval.retriever import Retriever
from funnel.retrieval.source import RetrievalQuery
from funnel.retrieval.sources import (
    ALSSource,
    EditorialSource,
    ItemKNNSource,
    NewItemsSource,
    TrendingSource,
    make_source,
    retrieval_data,
)

DAY = 86_400_000
TS = pa.timestamp("ms", "UTC")


def clusters(n_users=60, seed=0):
    """Even users like items 0..9, odd users items 10..19."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        lo = 0 if u % 2 == 0 else 10
        for i in rng.choice(np.arange(lo, lo + 10), 5, replace=False):
            rows.append((f"u{u:03d}", f"i{i:02d}", int(rng.integers(0, 10 * DAY))))
    users, items, ts = zip(*rows, strict=True)
    return pa.table({"user_id": list(users), "item_id": list(items), "timestamp": list(ts)})


DATA = retrieval_data(clusters())


def query(rows, recent=None, segments=None, now=None):
    rows = sp.csr_matrix(rows, dtype=np.float32)
    n = rows.shape[0]
    recent = recent if recent is not None else [np.empty(0, np.int64)] * n
    return RetrievalQuery(
        [f"q{i}" for i in range(n)],
        rows,
        recent,
        segments or [{}] * n,
        now if now is not None else DATA.now_ms,
    )


def one_hot(items, m):
    row = np.zeros((1, m), dtype=np.float32)
    row[0, list(items)] = 1
    return row


def col(name):
    return DATA.interactions.items.get(name)


def test_als_folds_fresh_history_in_without_retraining():
    src = ALSSource(factors=4, iterations=10, regularization=0.1).fit(DATA)
    m = DATA.X.shape[1]
    even = [col(f"i{i:02d}") for i in range(3)]
    before = src.retrieve(query(one_hot(even, m)), 5)[0]
    odd = [col(f"i{i}") for i in range(10, 16)]
    after = src.retrieve(query(one_hot(even + odd, m)), 5)[0]
    assert set(before.items.tolist()) <= {col(f"i{i:02d}") for i in range(10)}
    assert before.items.tolist() != after.items.tolist()
    assert set(before.reason.tolist()) == {"picked_for_you"}


def test_als_empty_history_gets_nothing():
    src = ALSSource(factors=4, iterations=2).fit(DATA)
    assert len(src.retrieve(query(np.zeros((1, DATA.X.shape[1]))), 5)[0]) == 0


def test_item_knn_anchor_is_the_recent_item_contributing_most():
    src = ItemKNNSource(k_neighbours=5, shrink=0.0, recency_decay=0.5).fit(DATA)
    a, b = col("i00"), col("i10")
    got = src.retrieve(query(one_hot([a, b], DATA.X.shape[1]), recent=[np.array([b, a])]), 10)[0]
    assert set(got.reason.tolist()) == {"because_you_watched"}
    odd = got.items >= 0
    for item, anchor in zip(got.items[odd], got.anchor[odd], strict=True):
        same_cluster_as_b = DATA.X[:, item].multiply(DATA.X[:, b]).nnz > 0
        assert anchor == (b if same_cluster_as_b else a) or DATA.X[:, item].multiply(DATA.X[:, a]).nnz > 0
    assert got.anchor[0] == b  # newest item weighs more


def test_item_knn_falls_back_to_history_when_no_recent():
    src = ItemKNNSource(shrink=0.0).fit(DATA)
    got = src.retrieve(query(one_hot([col("i00")], DATA.X.shape[1])), 5)[0]
    assert len(got) == 5 and got.anchor.tolist() == [col("i00")] * 5


def test_trending_decays_old_events_and_knows_segments():
    t = pa.table(
        {
            "user_id": ["a", "b", "c", "d", "e", "f"],
            "item_id": ["old", "old", "old", "fresh", "fresh", "local"],
            "timestamp": [0, 0, 0, 30 * DAY, 30 * DAY, 30 * DAY],
        }
    )
    users = pa.table(
        {"user_id": list("abcdef"), "attributes": [json.dumps({"country": c}) for c in ["US"] * 5 + ["JP"]]}
    )
    data = retrieval_data(t, users=users)
    src = TrendingSource(half_life_days=2.0).fit(data)
    ids = data.interactions.items
    q = query(np.zeros((2, 3)), segments=[{"country": "JP"}, {}], now=data.now_ms)
    jp, anyone = src.retrieve(q, 3)
    assert anyone.items[0] == ids.get("fresh") and anyone.reason[0] == "trending"
    assert jp.items[0] == ids.get("local") and jp.reason[0] == "popular_in_segment"
    assert "country=JP" in src.segment_keys_.tolist()
    slow = TrendingSource(half_life_days=1000.0).fit(data)
    assert slow.retrieve(q, 1)[1].items[0] == ids.get("old")


def test_new_items_window_order_engagement_and_unlisted():
    t = pa.table({"user_id": ["a", "b", "c"], "item_id": ["p", "p", "q"], "timestamp": [10 * DAY] * 3})
    items = pa.table(
        {
            "item_id": ["p", "q", "r", "s", "gone"],
            "published_at": pa.array([8 * DAY, 9 * DAY, 1 * DAY, 9 * DAY + 1, 9 * DAY], TS),
            "status": ["listed", "listed", "listed", None, "unlisted"],
        }
    )
    data = retrieval_data(t, items)
    ids = data.interactions.items
    q = query(np.zeros((1, 5)), now=10 * DAY)
    recency = NewItemsSource(window_days=5).fit(data).retrieve(q, 10)[0]
    assert [ids.key(i) for i in recency.items] == ["s", "q", "p"]
    assert set(recency.reason.tolist()) == {"new"}
    eng = NewItemsSource(window_days=5, rank_by="engagement").fit(data).retrieve(q, 10)[0]
    assert ids.key(eng.items[0]) == "p"
    later = NewItemsSource(window_days=5).fit(data).retrieve(query(np.zeros((1, 5)), now=14 * DAY), 10)[0]
    assert [ids.key(i) for i in later.items] == ["s"]


def test_editorial_runtime_lists_persist(tmp_path):
    src = EditorialSource(curated=["i01", "i02"]).fit(DATA)
    src.set_lists(sponsored=["i02", "nope"])
    src.save(tmp_path / "e")
    again = EditorialSource.load(tmp_path / "e")
    got = again.retrieve(query(np.zeros((1, DATA.X.shape[1]))), 5)[0]
    assert [DATA.interactions.items.key(i) for i in got.items] == ["i01", "i02"]
    assert got.reason.tolist() == ["editorial", "sponsored"]
    assert again.sponsored == ["i02", "nope"] and again.unknown_ == ["nope"]


def test_registry_refuses_unknown_names_and_bad_params():
    with pytest.raises(ConfigError):
        make_source("nope")
    with pytest.raises(ConfigError):
        make_source("trending", nope=1)


def test_retriever_cold_warming_warm_quotas():
    r = Retriever(
        {"item_knn": {"shrink": 0.0}, "trending": {}, "als": {"factors": 4, "iterations": 2}},
        total=100,
        warm_threshold=5,
    ).fit(DATA)
    m = DATA.X.shape[1]
    rows = np.vstack([np.zeros((1, m)), one_hot([0, 1], m), one_hot(range(8), m)])
    cold, warming, warm = r.user_quotas(query(rows), 100)
    assert cold["als"] == 0 and cold["item_knn"] == 0 and cold["trending"] == 100
    assert warming["item_knn"] > warm["item_knn"]
    assert all(abs(sum(q.values()) - 100) < 1e-9 for q in (cold, warming, warm))


def test_retriever_merges_and_survives_a_failing_source(tmp_path):
    r = Retriever({"item_knn": {"shrink": 0.0}, "trending": {}}, total=8).fit(DATA)

    def boom(q, k):
        raise RuntimeError("down")

    r.sources_["item_knn"].retrieve = boom
    out = r.retrieve(query(one_hot([0], DATA.X.shape[1])))
    assert isinstance(out[0], MergedCandidates) and len(out[0]) > 0  # partial: trending alone
    assert "item_knn" in r.last_errors_ and set(out[0].reason.tolist()) == {"trending"}


def test_retriever_save_load_round_trip(tmp_path):
    r = Retriever(
        {"item_knn": {"shrink": 0.0}, "trending": {}, "editorial": {"curated": ["i05"]}}, total=12
    ).fit(DATA)
    q = query(one_hot([0, 3], DATA.X.shape[1]), recent=[np.array([3, 0])])
    r.save(tmp_path / "r")
    again = Retriever.load(tmp_path / "r")
    a, b = r.retrieve(q)[0], again.retrieve(q)[0]
    assert a.items.tolist() == b.items.tolist() and a.reason.tolist() == b.reason.tolist()
    np.testing.assert_array_equal(a.ranks, b.ranks)
    assert again.total == 12 and list(again.sources_) == ["item_knn", "trending", "editorial"]


def test_als_configurable_index_is_saved_with_the_source(tmp_path):
    src = ALSSource(factors=4, iterations=4, index="hnsw", index_params={"M": 8, "ef_search": 64}).fit(DATA)
    q = query(one_hot([0, 1, 2], DATA.X.shape[1]))
    src.save(tmp_path / "a")
    again = ALSSource.load(tmp_path / "a")
    assert type(again.index_).__name__ == "HnswIndex"
    assert again.retrieve(q, 5)[0].items.tolist() == src.retrieve(q, 5)[0].items.tolist()


def test_als_fold_in_matches_implicit():
    src = ALSSource(factors=6, iterations=5, regularization=0.5).fit(DATA)
    rows = DATA.X[:7]
    model = src.model_
    expected = model._model.recalculate_user(np.arange(7), model._confidence(rows))  # implicit's own solve
    np.testing.assert_allclose(src.user_vectors(rows), expected, rtol=1e-3, atol=1e-4)


def test_cold_user_with_onboarding_interests_gets_content_candidates():
    pytest.importorskip("funnel.retrieval.sources.content")
    from funnel.data.synthetic import SyntheticConfig, generate

    ds = generate(SyntheticConfig(n_users=80, n_items=60, n_interactions=1500, seed=5))
    data = retrieval_data(ds.interactions, ds.items, ds.users)
    r = Retriever({"trending": {}, "content": {"embedder": "tfidf", "dim": 8}}, total=20).fit(data)
    m = data.X.shape[1]
    q = RetrievalQuery(
        ["new"],
        sp.csr_matrix((1, m), dtype=np.float32),
        [np.empty(0, np.int64)],
        [{"country": "US"}],
        data.now_ms,
        interests=[np.array([3, 4])],
    )
    got = r.retrieve(q)[0]
    assert len(got) == 20 and {"similar_to_what_you_like", "trending"} <= set(got.reason.tolist())
    assert r.user_quotas(q)[0]["content"] > 0


def test_retriever_budget_skips_the_sources_still_waiting():
    import time

    r = Retriever({"item_knn": {"shrink": 0.0}, "trending": {}}, total=8, budget_ms=5.0).fit(DATA)
    slow = r.sources_["item_knn"].retrieve

    def sleepy(q, k):
        time.sleep(0.02)
        return slow(q, k)

    r.sources_["item_knn"].retrieve = sleepy
    out = r.retrieve(query(one_hot([0], DATA.X.shape[1]), recent=[np.array([0])]))
    assert "skipped" in r.last_errors_["trending"] and "item_knn" not in r.last_errors_
    assert set(out[0].reason.tolist()) == {"because_you_watched"}


def test_mips_augment_keeps_inner_products_and_equalises_norms():
    from funnel.retrieval.sources.als_source import mips_augment

    Y = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32) * np.arange(1, 51)[:, None] / 10
    A = mips_augment(Y)
    q = np.random.default_rng(1).normal(size=4).astype(np.float32)
    np.testing.assert_allclose(A @ np.append(q, 0), Y @ q, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(A, axis=1), np.linalg.norm(Y, axis=1).max(), rtol=1e-5)


def test_als_auto_index_above_the_exact_limit_is_fast_scan_with_exact_scores(monkeypatch, tmp_path):
    from funnel.retrieval.sources import als_source

    monkeypatch.setattr(als_source, "EXACT_MAX_ITEMS", 5)  # 20 items: above the limit
    src = ALSSource(factors=4, iterations=6, index_params={"nlist": 2, "nprobe": 2}).fit(DATA)
    assert type(src.index_).__name__ == "IvfPqFastScanIndex" and src.index_.refine_factor == 4
    seen = [col("i00"), col("i01"), col("i02")]
    got = src.retrieve(query(one_hot(seen, DATA.X.shape[1])), 5)[0]
    vector = src.user_vectors(sp.csr_matrix(one_hot(seen, DATA.X.shape[1])))[0]
    assert len(got) == 5 and not set(got.items.tolist()) & set(seen)
    # refined scores are the exact inner products of the folded-in vector with the item factors
    np.testing.assert_allclose(got.scores, src.item_factors_[got.items] @ vector, rtol=1e-4, atol=1e-5)
    src.save(tmp_path / "a")
    again = ALSSource.load(tmp_path / "a")
    assert type(again.index_).__name__ == "IvfPqFastScanIndex"
    assert again.retrieve(query(one_hot(seen, DATA.X.shape[1])), 5)[0].items.tolist() == got.items.tolist()


@pytest.mark.parametrize("window_days", [5.0, 2.5, 0.5 + 1e-9])  # the last is not a whole number of ms
def test_new_items_by_recency_find_the_window_by_search_as_a_scan_would(window_days):
    # a data clock behind the catalogue: the newest items are "in the future" and head the order
    rng = np.random.default_rng(1)
    now0, w = 10 * DAY, window_days * DAY
    edges = [now0 + 1, now0, now0 - int(w) + 1, now0 - int(w), now0 - int(w) - 1, now0 - int(np.ceil(w))]
    published = np.concatenate([rng.integers(0, 20 * DAY, 300), edges])
    names = [f"i{i:03d}" for i in range(len(published))]
    t = pa.table({"user_id": ["a"], "item_id": [names[0]], "timestamp": [0]})
    data = retrieval_data(t, pa.table({"item_id": names, "published_at": pa.array(published, TS)}))
    src = NewItemsSource(window_days=window_days).fit(data)
    for now in (now0, now0 + 1, 3 * DAY, 25 * DAY):
        for limit in (None, 1, 7, 400):
            age = (now - src.published_).astype(np.float64)
            want = np.flatnonzero((age >= 0) & (age < w))[:limit]  # the scan, in the fitted order
            items, scores = src.ranking(now, limit)
            assert items.tolist() == src.items_[want].tolist(), (now, limit)
            assert np.allclose(scores, 1.0 - (now - src.published_[want]) / w)
    # at now0: published at now0 is new (age 0), one ms later is not yet, a whole window earlier is not
    new_ids = {data.interactions.items.key(i) for i in src.ranking(now0)[0]}
    assert names[-5] in new_ids and names[-6] not in new_ids and names[-1] not in new_ids
