"""Position bias: the click model's propensities, click attribution, impression negatives, weights."""

import numpy as np
import pyarrow as pa
import pytest

from funnel.core.errors import ValidationError
from funnel.core.interactions import Interactions
from funnel.data.synthetic import SyntheticConfig, generate
from funnel.ranking.dataset import append_items, candidate_rows, row_weights, window_impressions
from funnel.ranking.position_bias import BiasConfig, ImpressionSlots, PositionBiasModel, impression_slots
from funnel.retrieval.merge import merge_one
from funnel.retrieval.sources.common import candidates

TRUE = np.array([1.0, 0.7, 0.5, 0.35, 0.25, 0.2])


def _confounded(n: int = 300_000, seed: int = 0):
    """Slates of 6 where the logging policy puts more relevant items higher (noisy sort)."""
    rng = np.random.default_rng(seed)
    gamma = rng.uniform(0.02, 0.5, 200)
    slates = rng.integers(0, 200, (n // 6, 6))
    order = np.argsort(-(gamma[slates] + rng.normal(0, 0.1, slates.shape)), axis=1)
    slates = np.take_along_axis(slates, order, axis=1)
    pos = np.broadcast_to(np.arange(6), slates.shape).ravel()
    item = slates.ravel()
    clicked = rng.random(len(item)) < TRUE[pos] * gamma[item]
    return pos, item, clicked


def test_pbm_recovers_propensities_where_click_rates_are_confounded():
    pos, item, clicked = _confounded()
    m = PositionBiasModel(max_position=6, method="pbm").fit(pos, item, clicked)
    assert m.theta_[0] == 1.0 and m.method_ == "pbm"
    np.testing.assert_allclose(m.theta_, TRUE, atol=0.03)
    naive = np.bincount(pos, clicked) / np.bincount(pos)
    assert np.abs(naive / naive[0] - TRUE).max() > 0.1  # the relevance confound PBM removes


def test_pbm_recovers_the_synthetic_generators_examination_curve():
    # The generator clicks with P = position_bias[pos] * sigmoid(affinity - offset). Relevance is
    # per user, which a per-item γ cannot hold, and duplicate slots are re-drawn uniformly (more of
    # them further down), so PBM is close but not exact: measured max error 0.013 on this world.
    ds = generate(SyntheticConfig(n_users=600, n_items=300, n_interactions=40_000, seed=5))
    inter = Interactions.from_table(ds.interactions)
    slots = impression_slots(ds.impressions, inter)
    m = PositionBiasModel(max_position=10).fit(slots.position, slots.item, slots.clicked)
    true = ds.truth.position_bias / ds.truth.position_bias[0]
    np.testing.assert_allclose(m.theta_, true, atol=0.04)
    assert np.all(np.diff(m.theta_) < 0)


def test_exploration_slots_give_click_rate_ratios():
    rng = np.random.default_rng(1)
    pos, item, clicked = _confounded(seed=2)
    explored = np.zeros(len(pos), dtype=bool)
    # randomised slots: a random item at a random position
    n = 120_000
    r_pos, r_item = rng.integers(0, 6, n), rng.integers(0, 200, n)
    r_click = rng.random(n) < TRUE[r_pos] * 0.3
    allp, alli = np.r_[pos, r_pos], np.r_[item, r_item]
    allc, alle = np.r_[clicked, r_click], np.r_[explored, np.ones(n, dtype=bool)]
    m = PositionBiasModel(max_position=6, min_explored=1000).fit(allp, alli, allc, alle)
    assert m.method_ == "explore"
    np.testing.assert_allclose(m.theta_, TRUE, atol=0.04)
    assert PositionBiasModel(max_position=6, min_explored=10**6).fit(allp, alli, allc, alle).method_ == "pbm"


def test_weights_are_clipped_inverse_propensities_and_later_positions_share_the_last():
    m = PositionBiasModel(max_position=3)
    m.theta_ = np.array([1.0, 0.5, 0.05])
    w = m.weights(np.array([0, 1, 2, 7, -1]), max_weight=10.0)
    assert w.tolist() == [1.0, 2.0, 10.0, 10.0, 1.0]  # 1/0.05 = 20 clipped; -1: unknown position
    with pytest.raises(ValidationError):
        PositionBiasModel().fit(np.array([0, 1]), np.array([0, 0]), np.array([False, False]))
    with pytest.raises(ValidationError):
        BiasConfig(negatives="some")


def _inter(rows):
    users, items, ts, types = zip(*rows, strict=True)
    return Interactions.from_table(
        pa.table({"user_id": users, "item_id": items, "timestamp": ts, "type": types})
    )


def test_impression_slots_attribute_clicks_within_the_window():
    inter = _inter([("u", "a", 0, "click"), ("u", "b", 1_500, "click"), ("u", "c", 9_000, "click"),
                    ("u", "a", 1_200, "skip"), ("v", "a", 1_100, "click")])  # fmt: skip
    table = pa.table({"request_id": ["r1", "r2"], "user_id": ["u", "v"],
                      "item_ids": [["a", "b", "c", "zz"], ["a"]], "positions": [[0, 1, 2, 3], [4]],
                      "timestamp": pa.array([1_000, 1_000]).cast(pa.timestamp("ms", "UTC"))})  # fmt: skip
    s = impression_slots(table, inter, attribution_ms=5_000)
    items = inter.items.keys_of(s.item)
    assert items == ["a", "b", "c", "a"]  # the unknown item "zz" is dropped
    # a: clicked before the impression, then skipped; b: 500 ms after; c: 8 s after (> 5 s)
    assert s.clicked.tolist() == [False, True, False, True]
    assert s.position.tolist() == [0, 1, 2, 4]


def test_window_impressions_negatives_and_clicked_positions():
    n_items = 10
    # user 0 (cut 100) and user 2 (cut 50) are label users; user 1 is not
    slots = ImpressionSlots(
        user=np.array([0, 0, 0, 0, 0, 1, 2, 2]),
        item=np.array([1, 2, 3, 4, 2, 5, 6, 7]),
        position=np.array([0, 1, 2, 3, 5, 0, 2, 3]),
        timestamp=np.array([90, 100, 100, 100, 200, 100, 60, 60]),
        clicked=np.array([False, True, False, False, True, False, True, False]),
    )
    cuts = np.array([100, 0, 50])
    engaged = np.array([0 * n_items + 2, 2 * n_items + 6])  # sorted keys
    seen = np.array([0 * n_items + 4])
    shown, keys, pos = window_impressions(slots, np.array([0, 2]), cuts, n_items, engaged, seen)
    # item 1 is before the cut, 2 engaged, 4 seen in history: only 3 is a negative of user 0
    assert [s.tolist() for s in shown] == [[3], [7]]
    assert keys.tolist() == [2, 26] and pos.tolist() == [1, 2]  # the earliest clicked slot per key


def test_row_weights_only_on_engaged_clicked_rows():
    m = PositionBiasModel(max_position=4)
    m.theta_ = np.array([1.0, 0.5, 0.25, 0.04])
    keys, engaged = np.array([5, 6, 7, 8, 9]), np.array([1, 1, 0, 1, 1], dtype=np.float32)
    w = row_weights(keys, engaged, np.array([5, 6, 7, 9]), np.array([0, 2, 1, 3]), m, max_weight=8.0)
    assert w.dtype == np.float32 and w.tolist() == [1.0, 4.0, 1.0, 1.0, 8.0]


def test_impressed_items_become_negative_rows_with_their_labels():
    m = merge_one([candidates(np.array([0, 1, 2]), np.array([3.0, 2.0, 1.0]), "trending")],
                  ("trending",), np.array([1.0]), total=3)  # fmt: skip
    m2 = append_items(m, np.array([2, 5, 4]))
    assert m2.items.tolist() == [0, 1, 2, 4, 5] and m2.source.tolist()[-2:] == [-1, -1]
    assert np.isnan(m2.scores[-2:]).all() and np.isnan(m2.ranks[-2:]).all()
    n = 10
    positives = {"engage": np.array([0]), "dislike": np.array([5])}  # user 0: engaged 0, skipped 5
    shown = [np.array([1, 4, 5])]
    keep, labels, _ = candidate_rows([m2], np.array([0]), ["u"], n, positives, 0, 0, shown)
    assert keep[0].tolist() == [0, 1, 3, 4]  # the positive and the three impressed (no sampled ones)
    assert labels["engage"][0].tolist() == [1, 0, 0, 0]
    assert labels["dislike"][0].tolist() == [0, 0, 0, 1]
    keep0, _, _ = candidate_rows([m2], np.array([0]), ["u"], n, positives, 0, 0)
    assert keep0[0].tolist() == [0, 4]  # without impressions: head positives only


SOURCES = {"item_knn": {}, "trending": {}}


@pytest.fixture(scope="module")
def world():
    from funnel.retrieval.sources.common import retrieval_data

    ds = generate(SyntheticConfig(n_users=200, n_items=150, n_interactions=6000, seed=7))
    return ds, retrieval_data(Interactions.from_table(ds.interactions), ds.items, ds.users)


def _pipe(**bias):
    from funnel.ranking.model import RankingPipeline

    return RankingPipeline(SOURCES, total=60, negatives=20, max_label_users=10_000, position_bias=bias)


def test_pipeline_rows_unchanged_when_impressions_are_switched_off(world, tmp_path):
    ds, data = world
    plain, _ = _pipe().training_rows(data, tmp_path / "a")
    off, _ = _pipe(negatives="none", weights=False).training_rows(data, tmp_path / "b", ds.impressions)
    assert plain.weights is None and off.weights is None
    np.testing.assert_array_equal(plain.X, off.X)
    np.testing.assert_array_equal(plain.items, off.items)
    for h in plain.labels:
        np.testing.assert_array_equal(plain.labels[h], off.labels[h])


def test_pipeline_rows_with_impressions(world, tmp_path):
    ds, data = world
    plain, _ = _pipe().training_rows(data, tmp_path / "a")
    p = _pipe(max_weight=5.0)
    rows, _ = p.training_rows(data, tmp_path / "b", ds.impressions)
    assert p.bias_report_["used"] and p.bias_.theta_[0] == 1.0
    assert len(rows.X) > len(plain.X) and rows.stats["impression_only_rows"] > 0
    n_src = rows.X[:, rows.names.index("n_sources")]
    assert (rows.labels["engage"][n_src == 0] == 0).all()  # not returned by retrieval: negatives
    assert np.isnan(rows.X[n_src == 0, rows.names.index("src_trending_score")]).all()
    w = rows.weights
    assert w is not None and w.min() == 1.0 and w.max() <= 5.0
    assert (rows.labels["engage"][w > 1] == 1).all() and rows.stats["weighted_rows"] == int((w > 1).sum()) > 0
    allowed = np.r_[1.0, np.minimum(1.0 / p.bias_.theta_, 5.0)].astype(np.float32)
    assert np.isin(w, allowed).all()
