"""The Engine serving the full pipeline: retrieval + ranker + re-ranking, fresh events, fallback."""

import numpy as np
import pytest

from funnel.data.synthetic import SyntheticConfig, generate
from funnel.engine import Engine

DS = generate(SyntheticConfig(n_users=300, n_items=200, n_interactions=15_000, seed=5))
COLD_REASONS = ("popular_in_country", "trending", "new_from_creator", "popular", "picked_for_you")


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    eng = Engine(tmp_path_factory.mktemp("pipeline"))
    eng.import_items(DS.items)
    eng.import_users(DS.users)
    eng.import_interactions(DS.interactions)
    summary = eng.train(ranking={"ranker": {"n_estimators": 40}})
    assert "engage" in summary.ranking["heads"], summary.ranking
    return eng


@pytest.mark.slow
def test_pages_come_from_the_ranker_with_reasons_and_no_seen_items(engine):
    pipeline = engine.pipeline()
    assert pipeline.ranking is not None
    user = "u000003"
    recs = engine.recommend(user, k=10)
    assert len(recs) == 10 and len({r.item_id for r in recs}) == 10
    seen = set(pipeline.bundle.items.keys_of(pipeline.history_rows([user]).indices))
    assert not seen & {r.item_id for r in recs}
    assert all(r.reason and r.reason_code for r in recs)
    assert all(0 < r.propensity <= 1 for r in recs)
    assert any(np.isfinite(r.score) for r in recs)  # ranked, not a popularity pad


@pytest.mark.slow
def test_cold_user_gets_cold_start_reasons_and_policy_holds(engine):
    recs = engine.recommend("someone-new", k=5, country="US", age_bucket="25-34")
    assert len(recs) == 5
    assert all(r.reason_code in COLD_REASONS for r in recs), [r.reason_code for r in recs]
    table = engine.pipeline().ranking.reranker.table
    idx = engine.pipeline().bundle.items.lookup([r.item_id for r in recs])
    assert table.region_ok(idx, "US").all()


@pytest.mark.slow
def test_a_fresh_event_is_excluded_from_the_next_page_without_retraining(engine):
    user = "u000010"
    first = engine.recommend(user, k=10)
    clicked = first[0].item_id
    now_ms = engine.pipeline().ranking.now_ms
    engine.log_interactions([{"user_id": user, "item_id": clicked, "type": "click", "timestamp": now_ms}])
    again = engine.recommend(user, k=10)
    assert clicked not in {r.item_id for r in again}
    assert engine.pipeline().ranking.now_ms > now_ms  # the data clock follows the events
    recent = engine.pipeline().ranking._recent([user])[0]
    assert engine.pipeline().bundle.items.keys_of(recent[:1]) == [clicked]


@pytest.mark.slow
def test_ranker_failure_falls_back_to_the_baseline(engine, monkeypatch):
    pipeline = engine.pipeline()

    def broken(*args, **kwargs):
        raise RuntimeError("feature store down")

    monkeypatch.setattr(pipeline.ranking, "recommend", broken)
    ranked = pipeline.recommend(["u000003"], 5)
    assert ranked[0].fallback == "baseline" and len(ranked[0].items) == 5
