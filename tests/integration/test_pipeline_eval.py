"""The full pipeline (retrieval + ranker) evaluated beside the baselines on the same split."""

import pytest

from funnel.core.interactions import Interactions
from funnel.data.synthetic import SyntheticConfig, generate
from funnel.eval.runner import METRICS, evaluate_models

DS = generate(SyntheticConfig(n_users=400, n_items=300, n_interactions=20_000, seed=11))


@pytest.mark.slow
def test_pipeline_row_beats_popularity_on_the_same_split():
    report = evaluate_models(
        Interactions.from_table(DS.interactions),
        "usertemporal",
        10,
        ["pop", "pipeline"],
        ratio=0.8,
        params={"pipeline": {"total": 200, "ranker": {"n_estimators": 40}}},
        progress=False,
        items_table=DS.items,
        users_table=DS.users,
    )
    res = report.results
    assert set(res) == {"pop", "pipeline"} and set(res["pipeline"]) == set(METRICS)
    assert res["pipeline"]["ndcg"] > res["pop"]["ndcg"]
    assert res["pipeline"]["coverage"] > res["pop"]["coverage"]


def test_two_tower_is_a_model_row_scored_on_the_same_split():
    """The two-tower source alone is a baseline row: personalised lists, better than popularity."""
    report = evaluate_models(
        Interactions.from_table(DS.interactions),
        "usertemporal",
        10,
        ["pop", "two_tower"],
        ratio=0.8,
        progress=False,
        items_table=DS.items,
        users_table=DS.users,
    )
    res = report.results
    assert set(res["two_tower"]) == set(METRICS)
    assert res["two_tower"]["ndcg"] > res["pop"]["ndcg"]
    assert res["two_tower"]["coverage"] > res["pop"]["coverage"]
