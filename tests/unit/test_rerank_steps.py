"""Unit tests of single re-ranking steps, the item table, and the trade-off helpers."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from funnel.core.errors import ConfigError
from funnel.eval.metrics import category_entropy
from funnel.rerank import (
    ItemPolicyTable,
    PageRequest,
    RerankConfig,
    ReRanker,
    RerankState,
    Slate,
    UserContext,
)
from funnel.rerank.diversity import category_vectors
from funnel.rerank.exploration import ExplorationSlots
from funnel.rerank.filters import SeenFilter, age_years
from funnel.rerank.items import rating_age
from funnel.rerank.tradeoff import pick_lambda

DAY = 86_400_000


def test_item_table_parses_attributes_once_per_distinct_string():
    items = pa.table(
        {
            "item_id": ["a", "b", "c", "d"],
            "status": [None, "unlisted", "listed", "listed"],
            "attributes": ['{"regions": ["US", "FR"]}', None, '{"age_rating": "PG-13"}', '{"regions": []}'],
        }
    )
    t = ItemPolicyTable.from_catalogue(items)
    assert t.listed.tolist() == [True, False, True, True]
    assert t.min_age.tolist() == [0, 0, 18, 0]  # an unknown rating counts as adult
    assert t.region_ok(np.arange(4), "US").tolist() == [True, True, True, True]
    assert t.region_ok(np.arange(4), "DE").tolist() == [False, True, True, True]
    assert t.region_ok(np.arange(4), None).tolist() == [False, True, True, True]
    assert t.index_of(["c", "zz"]).tolist() == [2, -1]


def test_ages():
    assert [rating_age(r) for r in (None, "all", "13+", "18 +", "X")] == [0, 0, 13, 18, 18]
    assert [age_years(b) for b in ("13-17", "55+", None, "adult")] == [13, 55, 0, 0]


def test_seen_decay_recovers_with_time():
    items = pa.table({"item_id": ["a", "b"]})
    t = ItemPolicyTable.from_catalogue(items)
    user = UserContext(seen=[0, 1, 1], seen_ms=[100 * DAY, 70 * DAY, 85 * DAY])
    st = RerankState.start(t, Slate(np.arange(2), np.array([1.0, -1.0])), user, PageRequest(now_ms=100 * DAY))
    SeenFilter(mode="decay", decay=0.5, recovery_days=30).prepare(st)
    # a: just seen -> x0.5; b: last seen 15 days ago -> factor 0.75, applied sign-safely to a negative score
    assert st.score.tolist() == pytest.approx([0.5, -1.0 / 0.75])
    assert st.alive.all()


def test_exploration_propensities_over_all_candidates_sum_to_one():
    rng = np.random.default_rng(3)
    n = 60
    t = ItemPolicyTable.from_catalogue(pa.table({"item_id": [f"i{j}" for j in range(n)]}))
    t = t.with_feedback(rng.integers(0, 200, n).astype(float), rng.integers(0, 5, n).astype(float))
    st = RerankState.start(
        t, Slate(np.arange(n), rng.random(n)), UserContext(cold=True), PageRequest(k=5), rng
    )
    ExplorationSlots(rate=0.1, rate_cold=0.25, pool_size=20, draws=16).prepare(st)
    plan = st.exploration
    value = np.where(st.alive, st.score, -np.inf)
    admitted = rng.random(n) < 0.7
    ok = (value[plan.pool] > -np.inf) & admitted[plan.pool]
    pi = plan.win_probabilities(ok)
    assert pi.sum() == pytest.approx(1.0) and (pi[~ok] == 0).all()
    for exploit in np.flatnonzero(admitted)[:10]:
        total = 0.25 * pi.sum() + 0.75  # every candidate's probability at this position
        slot = np.flatnonzero(plan.pool == exploit)
        _, p, _ = plan.choose(1, value, admitted, int(exploit))  # position 1 may or may not explore
        expected_exploit = 0.75 + 0.25 * (pi[slot[0]] if len(slot) else 0.0)
        if not plan.slots[1]:
            assert p == pytest.approx(expected_exploit)
        assert total == pytest.approx(1.0)


def test_win_probabilities_are_the_share_of_draws_won_for_every_mask_asked_again():
    rng = np.random.default_rng(5)
    n = 12
    t = ItemPolicyTable.from_catalogue(pa.table({"item_id": [f"i{j}" for j in range(n)]}))
    st = RerankState.start(t, Slate(np.arange(n), rng.random(n)), UserContext(), PageRequest(k=2), rng)
    ExplorationSlots(rate=0.5, pool_size=6, draws=40).prepare(st)
    plan = st.exploration
    masks = [rng.random(len(plan.pool)) < 0.6 for _ in range(4)]
    masks[0][:] = True
    for i, m in enumerate(masks):
        m[i] = True  # every mask admits some pool item
    first = [plan.win_probabilities(m) for m in masks]
    draws = plan._draws()
    for m, pi in zip(masks + masks[::-1], first + first[::-1], strict=True):
        again = plan.win_probabilities(m.copy())  # an equal mask, another array
        # by hand: for every draw column, the admitted pool item with the largest sample wins
        won = np.zeros(len(plan.pool))
        admitted = np.flatnonzero(m)
        for column in draws.T:
            won[admitted[np.argmax(column[admitted])]] += 1
        assert again.tolist() == pi.tolist() == (won / draws.shape[1]).tolist()
        assert not again.flags.writeable


def test_page_trace_and_reasons():
    items = pa.table(
        {
            "item_id": ["a", "b", "c", "d"],
            "title": ["A", "B", "C", "D"],
            "creator_id": ["x", "x", "y", "z"],
            "attributes": [None, None, '{"sponsored": true}', None],
        }
    )
    t = ItemPolicyTable.from_catalogue(items)
    slate = Slate(np.array([0, 1, 2, 3, 3]), np.array([4.0, 3, 2, 1, 1]), np.array(["trending"] * 5), None)
    cfg = RerankConfig(max_per_creator=1, sponsored_positions=(1,), explore_rate=0.0)
    page = ReRanker(cfg, t).rerank(slate, UserContext(country="FR"), PageRequest(k=3))
    assert page.items.tolist() == [0, 2, 3]
    assert [r.text for r in page.reasons] == ["Trending now", "Sponsored", "Trending now"]
    traces = {tr.step: tr for tr in page.trace}
    assert traces["input"].removed == [3]  # the duplicate
    assert 1 in traces["caps"].moved  # b was capped out (creator x)
    assert traces["sponsored"].inserted == [2]


def test_config_rejects_bad_settings():
    with pytest.raises(ConfigError):
        RerankConfig(mmr_lambda=1.5)
    with pytest.raises(ConfigError):
        RerankConfig(steps=("seen", "seen"))
    assert RerankConfig.from_dict(RerankConfig().to_dict()) == RerankConfig()


def test_category_entropy_and_pick_lambda():
    cats = np.array([0, 0, 1, 2])
    assert category_entropy(np.array([[0, 1]]), cats) == 0.0
    assert category_entropy(np.array([[0, 2, 3, -1]]), cats) == pytest.approx(np.log2(3))
    rows = [{"lambda": 0.0, "ndcg": 0.2}, {"lambda": 0.2, "ndcg": 0.197}, {"lambda": 0.5, "ndcg": 0.15}]
    assert pick_lambda(rows) == 0.2


def _set_cosine(a: list[int], b: list[int]) -> float:
    sa, sb = {c for c in a if c >= 0}, {c for c in b if c >= 0}
    return len(sa & sb) / (len(sa) * len(sb)) ** 0.5 if sa and sb else 0.0


@pytest.mark.parametrize("offset", [0, 1 << 20])  # small codes (the table) and large ones (the sort)
def test_category_vectors_give_the_cosine_of_category_sets(offset):
    rows = [[3, 5, -1], [5, 5, -1], [7, -1, -1], [-1, -1, -1], [5, 3, 9], [9, -1, -1]]
    codes = np.array([[c + offset if c >= 0 else -1 for c in r] for r in rows])
    v = category_vectors(codes)
    assert v.dtype == np.float32 and v.shape == (6, 4)  # four distinct codes
    assert np.allclose(np.linalg.norm(v, axis=1), [1, 1, 1, 0, 1, 1], atol=1e-6)
    want = np.array([[_set_cosine(a, b) for b in rows] for a in rows])
    assert np.allclose(v @ v.T, want, atol=1e-6)  # e.g. {3,5}·{5} = 1/sqrt(2), {5,5} counts 5 once
