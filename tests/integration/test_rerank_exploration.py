"""Exploration over many requests: the measured share of explored slots and the logged propensities."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from funnel.rerank import ItemPolicyTable, PageRequest, RerankConfig, ReRanker, Slate, UserContext

N_ITEMS, N_CAND, K, REQUESTS = 3000, 200, 20, 10_000


@pytest.fixture(scope="module")
def table() -> ItemPolicyTable:
    rng = np.random.default_rng(0)
    items = pa.table(
        {
            "item_id": [f"i{j}" for j in range(N_ITEMS)],
            "categories": [[f"c{c}"] for c in rng.integers(0, 30, N_ITEMS)],
            "creator_id": [f"cr{c}" for c in rng.integers(0, 500, N_ITEMS)],
        }
    )
    impressions = np.where(
        rng.random(N_ITEMS) < 0.5, rng.integers(0, 100, N_ITEMS), rng.integers(100, 5000, N_ITEMS)
    )
    clicks = rng.binomial(impressions, 0.05)
    return ItemPolicyTable.from_catalogue(items).with_feedback(
        impressions.astype(float), clicks.astype(float)
    )


def serve(table: ItemPolicyTable, cold: bool, config: RerankConfig, seed: int = 1):
    rr = ReRanker(config, table)
    rng = np.random.default_rng(seed)
    for r in range(REQUESTS):
        items = rng.choice(N_ITEMS, N_CAND, replace=False)
        slate = Slate(items, rng.lognormal(0, 1, N_CAND))
        yield (
            rr,
            slate,
            rr.rerank(slate, UserContext(cold=cold), PageRequest(k=K), np.random.default_rng([seed, r])),
        )


@pytest.mark.slow
@pytest.mark.parametrize("cold", [False, True])
def test_explored_share_is_the_configured_rate_within_one_point(table: ItemPolicyTable, cold: bool):
    config = RerankConfig()
    rate = config.explore_rate_cold if cold else config.explore_rate
    slots = explored = 0
    for _, _, page in serve(table, cold, config):
        assert len(page) == K
        slots += len(page)
        explored += int(page.explored.sum())
        assert ((page.propensity > 0) & (page.propensity <= 1)).all()
    share = explored / slots
    print(f"cold={cold}: explored {explored} of {slots} slots = {share:.4f} (configured {rate})")
    assert abs(share - rate) <= 0.01


@pytest.mark.slow
def test_logged_propensities_reweight_to_the_exploit_policy(table: ItemPolicyTable):
    """IPS with the logged propensities: E[1{shown = exploit choice} / propensity] = 1 at position 0.

    The exploit choice is what the page shows with exploration off. Logging 1 instead of
    ``(1 − ε) + ε·π`` would give ``1 − ε`` (0.9 for cold users), logging ``1 − ε`` alone would
    over-count whenever the exploit item could also win the Thompson draw.
    """
    config = RerankConfig()
    greedy = RerankConfig(explore_rate=0.0, explore_rate_cold=0.0)
    weights = []
    for rr, slate, page in serve(table, True, config, seed=2):
        exploit = ReRanker(greedy, rr.table).rerank(slate, UserContext(cold=True), PageRequest(k=1)).items[0]
        weights.append(float(page.items[0] == exploit) / page.propensity[0])
    estimate = float(np.mean(weights))
    print(f"IPS estimate of the exploit policy's mass at position 0: {estimate:.4f}")
    assert abs(estimate - 1.0) <= 0.02
