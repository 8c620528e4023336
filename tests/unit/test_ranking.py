"""Unit tests of the ranking stage: features, labels, the multi-objective ranker."""

import numpy as np
import pyarrow as pa
import pytest

from funnel.core.errors import NotTrainedError, ValidationError
from funnel.core.interactions import Interactions
from funnel.features.online.memory import MemoryOnlineStore
from funnel.features.online.protocol import feature_key
from funnel.features.serving import FeatureServer
from funnel.features.streaming import Catalog
from funnel.ranking.dataset import subset
from funnel.ranking.features import Context, ItemStatics, build_features, feature_names
from funnel.ranking.labels import LabelConfig, available_heads, head_labels, label_mask, user_cuts
from funnel.ranking.ranker import MultiObjectiveRanker
from funnel.ranking.report import auc, group_ndcg
from funnel.retrieval.merge import merge_one
from funnel.retrieval.sources.common import candidates

T0 = 1_767_225_600_000  # 2026-01-01 00:00 UTC, a Thursday


class Empty:
    def get_many(self, keys):
        return [{} for _ in keys]


def test_build_features_keeps_missing_source_scores_as_nan():
    statics = ItemStatics(["a", "b", "c", "d"], np.array([4.0, 3.0, 2.0, 1.0]), np.full(4, np.nan))
    a = candidates(np.array([0, 1]), np.array([0.9, 0.5]), "picked_for_you")
    b = candidates(np.array([1, 2]), np.array([7.0, 3.0]), "trending")
    merged = merge_one([a, b], ("als", "trending"), np.array([2.0, 2.0]), total=3)
    fv = FeatureServer(Empty()).read("u", statics.ids_of(merged.items), t=T0 + 3_600_000 * 5)
    fm = build_features(fv, merged, Context(device="tv", surface="weird"), statics)
    assert fm.names == feature_names(("als", "trending"))
    assert fm.values.dtype == np.float32
    rows = {int(i): k for k, i in enumerate(merged.items)}
    assert fm.column("src_als_score")[rows[0]] == pytest.approx(0.9)
    assert np.isnan(fm.column("src_trending_score")[rows[0]])  # missing is NaN, not 0
    assert np.isnan(fm.column("src_als_rank")[rows[2]])
    assert fm.column("n_sources")[rows[1]] == 2
    assert fm.column("merge_position").tolist() == [0.0, 1.0, 2.0]
    assert fm.column("ctx_hour")[0] == 5 and fm.column("ctx_dow")[0] == 3  # Thursday
    assert fm.column("ctx_device")[0] == 4 and fm.column("ctx_surface")[0] == 5  # "other"
    # percentile: share of items strictly less popular (a=4 is above 3 of 4)
    assert fm.column("popularity_pct")[rows[0]] == pytest.approx(0.75)


def test_user_typical_age_from_recent_items():
    day = 86_400_000
    pub = np.array([T0 - 100 * day, T0 - 10 * day, T0 - 4 * day])
    statics = ItemStatics(["old", "new", "x"], np.ones(3), pub)
    store = MemoryOnlineStore()
    recent = {f"old|{T0 - 2 * day}": 1.0, f"new|{T0 - day}": 1.0}
    store.set_many({feature_key("user", "u", "recent"): recent})
    catalog = Catalog({"x": ()}, {"x": None}, {"x": int(pub[2])})
    merged = merge_one(
        [candidates(np.array([2]), np.array([1.0]), "trending")], ("trending",), np.array([1.0]), 1
    )
    fv = FeatureServer(store, catalog).read("u", ["x"], t=T0)
    fm = build_features(fv, merged, Context(), statics)
    assert fv.user["user_recent_items"] == ["new", "old"]
    # typical age = median(100, 10) = 55 days; the item is 4 days old
    assert fm.column("item_age_days")[0] == pytest.approx(4)
    assert fm.column("age_vs_user_typical_days")[0] == pytest.approx(4 - 55)


def _events(rows):
    users, items, ts, types, values = zip(*rows, strict=True)
    return Interactions.from_table(
        pa.table({"user_id": users, "item_id": items, "timestamp": ts, "type": types, "value": values})
    )


def test_user_cuts_and_global_cut():
    inter = _events(
        [("u", f"i{k}", 100 * k, "click", None) for k in range(10)] + [("v", "i0", 50, "click", None)]
    )
    cuts = user_cuts(inter, LabelConfig(label_fraction=0.2))
    assert cuts[0] == 900 - 180  # last - 0.2 * (last - first)
    assert cuts[1] == np.iinfo(np.int64).max  # too few events: history only
    is_label, times = label_mask(inter, LabelConfig(label_fraction=0.2, split="global"))
    assert (times == 701).all()  # the cut (720) clamped to one past the last history event
    assert is_label.sum() == 2  # t=800, 900


def test_random_split_is_per_event_and_stable():
    rows = [("u", f"i{k}", k, "click", None) for k in range(200)]
    cfg = LabelConfig(label_fraction=0.25, split="random")
    a, _ = label_mask(_events(rows), cfg)
    b, _ = label_mask(_events([*rows, ("u", "i999", 1000, "click", None)]), cfg)
    assert 30 < a.sum() < 70
    assert (b[:200] == a).all()  # another event does not move anyone's side


def test_label_defaults_per_split_and_draws():
    assert (LabelConfig().label_fraction, LabelConfig().draws) == (0.35, 1)
    assert (LabelConfig(split="random").label_fraction, LabelConfig(split="random").draws) == (0.2, 3)
    assert LabelConfig(split="random", label_fraction=0.5, draws=1).label_fraction == 0.5
    with pytest.raises(ValidationError, match="draws"):
        LabelConfig(split="user", draws=2)  # a time cut is one cut
    with pytest.raises(ValidationError, match="draws"):
        LabelConfig(split="random", draws=0)
    rows = [("u", f"i{k}", k, "click", None) for k in range(400)]
    a, _ = label_mask(_events(rows), LabelConfig(split="random", seed=0))
    b, _ = label_mask(_events(rows), LabelConfig(split="random", seed=1))
    assert 0 < (a & b).sum() < a.sum()  # each draw holds out its own events


def test_training_rows_stack_one_group_per_user_and_draw(tmp_path):
    from funnel.data.synthetic import SyntheticConfig, generate
    from funnel.ranking.model import RankingPipeline
    from funnel.retrieval.sources.common import retrieval_data

    ds = generate(SyntheticConfig(n_users=60, n_items=50, n_interactions=2000, seed=3))
    data = retrieval_data(ds.interactions, ds.items, ds.users)

    def rows(draws, seed=0):
        labels = {"split": "random", "draws": draws, "seed": seed}
        pipe = RankingPipeline({"item_knn": {}, "trending": {}}, total=40, labels=labels, negatives=10)
        return pipe.training_rows(data, tmp_path / f"{draws}-{seed}")[0]

    one, other, both = rows(1), rows(1, seed=1), rows(2)
    assert both.user_ids == one.user_ids + other.user_ids
    assert np.array_equal(both.X, np.concatenate([one.X, other.X]), equal_nan=True)
    assert both.stats["label_users"] == one.stats["label_users"] + other.stats["label_users"]
    engaged = np.concatenate([one.labels["engage"], other.labels["engage"]])
    assert np.array_equal(both.labels["engage"], engaged)


def test_heads_follow_the_event_types():
    inter = _events([("u", "a", 1, "click", None), ("u", "b", 2, "watch", 0.95), ("u", "c", 3, "watch", 0.2)])
    heads, missing = available_heads(inter, LabelConfig())
    assert heads == ("engage", "complete")
    assert set(missing) == {"like", "dislike"}
    keys = head_labels(inter, LabelConfig(), heads)
    assert keys["complete"].tolist() == [1]  # only the 95% watch completes
    with pytest.raises(ValidationError, match="split"):
        LabelConfig(split="weekly")


def _toy(n_users=40, per=20, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_users * per, 4)).astype(np.float32)
    engage = (X[:, 0] + 0.3 * rng.normal(size=len(X)) > 0.8).astype(np.float32)
    dislike = (X[:, 1] > 1.0).astype(np.float32)
    return X, np.full(n_users, per), {"engage": engage, "dislike": dislike, "like": np.zeros(len(X))}


def test_ranker_heads_weights_and_round_trip(tmp_path):
    X, groups, labels = _toy()
    r = MultiObjectiveRanker(n_estimators=30, min_child_samples=5).fit(
        X, groups, labels, ["a", "b", "c", "d"]
    )
    assert sorted(r.boosters_) == ["dislike", "engage"]
    assert "like: 0 positives" in r.skipped_["like"] and "complete" in r.skipped_
    heads = r.predict_heads(X)
    assert all(((p >= 0) & (p <= 1)).all() for p in heads.values())
    expected = heads["engage"] * 1.0 - 1.0 * heads["dislike"]
    np.testing.assert_allclose(r.score(X), expected)
    assert auc(heads["engage"], labels["engage"]) > 0.8
    r.save(tmp_path / "r")
    again = MultiObjectiveRanker.load(tmp_path / "r")
    np.testing.assert_array_equal(again.score(X), r.score(X))
    assert again.importance()["engage"] == r.importance()["engage"]


def test_ranker_errors():
    with pytest.raises(NotTrainedError):
        MultiObjectiveRanker().score(np.zeros((1, 2), np.float32))
    X, groups, labels = _toy()
    with pytest.raises(ValidationError, match="group_sizes"):
        MultiObjectiveRanker().fit(X, groups[:-1], labels, ["a", "b", "c", "d"])
    r = MultiObjectiveRanker(n_estimators=5, min_child_samples=5).fit(X, groups, labels, ["a", "b", "c", "d"])
    with pytest.raises(ValidationError, match="feature columns"):
        r.score(X[:, :3])


def test_report_metrics_by_hand():
    assert auc(np.array([0.2, 0.8, 0.5]), np.array([0, 1, 0])) == 1.0
    assert np.isnan(auc(np.array([0.2, 0.8]), np.array([1, 1])))
    # group 1: the positive at rank 2 -> 1/log2(3); group 2 has no positive and is skipped
    got = group_ndcg(np.array([0.9, 0.5, 0.1, 0.3]), np.array([0.0, 1.0, 0.0, 0.0]), np.array([3, 1]))
    assert got == pytest.approx(1 / np.log2(3))


def _nan_toy(seed=1):
    X, groups, labels = _toy(seed=seed)
    X = np.concatenate([X, np.zeros((len(X), 1), np.float32)], axis=1)  # a constant column
    X[np.random.default_rng(seed).random(X.shape) < 0.2] = np.nan  # missing values take the default side
    labels["like"] = (np.nan_to_num(X[:, 2]) > 0.7).astype(np.float32)
    return X, groups, labels


def test_compiled_heads_equal_lightgbm(tmp_path, monkeypatch):
    monkeypatch.setenv("FUNNEL_COMPILE_CACHE", str(tmp_path / "cache"))
    X, groups, labels = _nan_toy()
    names = ["a", "b", "c", "d", "e"]
    fast = MultiObjectiveRanker(n_estimators=40, min_child_samples=5).fit(X, groups, labels, names)
    slow = MultiObjectiveRanker(n_estimators=40, min_child_samples=5, compiled=False).fit(
        X, groups, labels, names
    )
    assert fast.scoring_ == "not compiled yet"
    got = fast.raw_scores(X)
    assert fast.scoring_ == "compiled (lleaves)" and slow.scoring_ == "lightgbm: compiled=False"
    assert sorted(got) == ["dislike", "engage", "like"]
    for head, booster in fast.boosters_.items():
        np.testing.assert_allclose(got[head], booster.predict(X, raw_score=True), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fast.score(X), slow.score(X), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fast.score(X, threads=2), slow.score(X), rtol=1e-9, atol=1e-12)
    fast.save(tmp_path / "r")
    again = MultiObjectiveRanker.load(tmp_path / "r")
    assert again.scoring_ == "compiled (lleaves)"  # compiled at load, before any request
    np.testing.assert_array_equal(again.score(X), fast.score(X))


def test_compiled_cache_is_reused_and_keyed_by_model(tmp_path):
    import lightgbm as lgb

    from funnel.ranking.compiled import compile_heads

    X, _, labels = _nan_toy()
    dense = np.nan_to_num(X, nan=0.3)  # a trained without NaN: NaN at scoring is read as 0 by LightGBM
    a = lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(dense, labels["engage"]), 15)
    b = lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(X, labels["dislike"]), 15)
    first, why = compile_heads({"a": a}, tmp_path)
    assert why == "" and len(list(tmp_path.glob("*.o"))) == 1
    second, _ = compile_heads({"a": a}, tmp_path)  # loaded from the cache: no new object
    assert len(list(tmp_path.glob("*.o"))) == 1
    np.testing.assert_array_equal(first.raw(X)["a"], second.raw(X)["a"])
    np.testing.assert_allclose(first.raw(X)["a"], a.predict(X, raw_score=True), rtol=1e-9, atol=1e-12)
    other, _ = compile_heads({"b": b}, tmp_path)  # another model never reuses a's code
    assert len(list(tmp_path.glob("*.o"))) == 2
    np.testing.assert_allclose(other.raw(X)["b"], b.predict(X, raw_score=True), rtol=1e-9, atol=1e-12)
    assert not list(tmp_path.glob(".*.tmp"))


def test_ranker_falls_back_to_lightgbm_with_the_reason(monkeypatch, caplog):
    import sys

    from funnel.ranking import compiled, ranker

    monkeypatch.setitem(sys.modules, "lleaves", None)  # as if it were not installed
    heads, why = compiled.compile_heads({})
    assert heads is None and "lleaves is not installed" in why

    def broken(boosters):
        return None, "lleaves compilation failed: RuntimeError: no LLVM"

    monkeypatch.setattr(ranker, "compile_heads", broken)
    X, groups, labels = _nan_toy()
    r = MultiObjectiveRanker(n_estimators=20, min_child_samples=5).fit(X, groups, labels, list("abcde"))
    with caplog.at_level("WARNING", logger="funnel.ranking.ranker"):
        got = r.predict_heads(X)
    assert r.scoring_ == "lightgbm: lleaves compilation failed: RuntimeError: no LLVM"
    assert "no LLVM" in caplog.text
    z = r.boosters_["dislike"].predict(X, raw_score=True)
    np.testing.assert_allclose(got["dislike"], 1.0 / (1.0 + np.exp(-z)))


def test_pipeline_with_impressions_keeps_position_propensities_through_save(tmp_path):
    from funnel.data.synthetic import SyntheticConfig, generate
    from funnel.ranking.model import RankingPipeline
    from funnel.retrieval.sources.common import retrieval_data

    ds = generate(SyntheticConfig(n_users=150, n_items=100, n_interactions=4000, seed=3))
    data = retrieval_data(Interactions.from_table(ds.interactions), ds.items, ds.users)
    kw = {"sources": {"trending": {}}, "total": 40, "negatives": 10, "ranker": {"n_estimators": 5}}
    p = RankingPipeline(**kw).fit(data, tmp_path, impressions=ds.impressions)
    assert p.report_["position_bias"]["used"] and p.report_["rows"]["weighted_rows"] > 0
    p.save(tmp_path / "p")
    q = RankingPipeline.load(tmp_path / "p")
    np.testing.assert_array_equal(q.position_theta_, p.position_theta_)
    assert q.position_theta_[0] == 1.0
    plain = RankingPipeline(**kw).fit(data, tmp_path)
    assert plain.position_theta_ is None and plain.report_["position_bias"]["used"] is False
    plain.save(tmp_path / "plain")
    assert RankingPipeline.load(tmp_path / "plain").position_theta_ is None


def test_merge_position_survives_sampling_and_reordering():
    # training rows are a sample of the candidates; the feature must be where retrieval put them
    statics = ItemStatics(["a", "b", "c", "d"], np.ones(4), np.full(4, np.nan))
    merged = merge_one(
        [candidates(np.array([3, 1, 2, 0]), np.array([4.0, 3.0, 2.0, 1.0]), "trending")],
        ("trending",),
        np.array([4.0]),
        total=4,
    )
    sampled = subset(merged, np.array([3, 1]))
    fv = FeatureServer(Empty()).read("u", statics.ids_of(sampled.items), t=T0)
    fm = build_features(fv, sampled, Context(), statics)
    assert fm.column("merge_position").tolist() == [3.0, 1.0]
    assert subset(sampled, np.array([1, 0])).positions().tolist() == [1.0, 3.0]
