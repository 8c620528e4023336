"""The feedback loop, simulated at small scale: the filter bubble forms without diversity and
exploration, and the engine's defaults keep pages above a category-entropy floor.

One world (300 users, 200 items, 30 days, a page a day per user on average, weekly retraining
forced live — the issue's horizon and cadence), two scenarios on the same seed and the same first
model:

* ``off``: exploration rates 0 and MMR λ 0 — pages are the ranker's order of what retrieval
  found from the users' own clicks, and retraining learns from those clicks;
* ``defaults``: the engine's :class:`~funnel.rerank.config.RerankConfig` (exploration, MMR).

What must hold: ``off``'s category entropy falls from the first five days to the last five, and the
defaults' falls by less than half as much; the defaults stay above :data:`FLOOR_BITS` on every day
while ``off`` spends its last ten days well below it (mean at least 0.15 bits under). If the loop
were cut (clicks not folded into the serving state, retrains not served) ``off`` would not narrow;
if diversity or exploration stopped acting on the served pages, ``defaults`` would fall to ``off``'s
level, under the floor.

Measured (the run is deterministic on one machine, not across CPUs: BLAS and FAISS pick their
kernels by instruction set, and the loop amplifies the last bits). First machine (143 s at load
~5): ``off`` 2.46 bits over days 0-4, 2.18 over days 25-29 (−0.29; minimum 1.99, at most 2.28
after day 20); ``defaults`` 2.82 → 2.71 (−0.11, 0.39 of ``off``'s fall; minimum 2.55, mean 2.71
against ``off``'s 2.23). Second machine (AVX2, no AVX-512; 85 s): ``off`` 2.42 → 2.28 (−0.14;
mean 2.22 over days 20-29, 2.46 on day 29 after the day-28 retrain); ``defaults`` 2.82 → 2.76
(−0.06, 0.43 of ``off``'s fall; minimum 2.53, mean 2.74 against ``off``'s 2.25). The test first
asked the defaults to fall 0.1 bits less than ``off`` and ``off`` to stay under the floor on
every day after day 20: single-sample margins that the second machine missed by 0.02 and 0.015
bits with the code unchanged; the fall ratio and the ten-day mean hold on both with room.
An 8-day version of this world (retraining every 3 days) narrowed by 0.05 bits in one install and
by 0.006 in another: too short a horizon to tell the loop from noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from funnel.simulation import Scenario, SimConfig
from funnel.simulation.runner import simulate_many

pytestmark = pytest.mark.slow

FLOOR_BITS = 2.45
"""Category entropy (bits) the default pages keep on every day of this world (measured minimum 2.55
and 2.53 on two machines; ``off``'s mean over days 20-29 at most 2.28 and 2.22)."""


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict]]:
    config = SimConfig(
        users=300, days=30, seed=0, n_items=200, visits_per_day=1.0,
        n_estimators=10, max_label_users=200, total=100,
    )  # fmt: skip
    scenarios = [
        Scenario(
            name="off", explore_rate=0.0, explore_rate_cold=0.0, mmr_lambda=0.0, retrain_days=7, gate=False
        ),
        Scenario(name="defaults", retrain_days=7, gate=False),
    ]
    folder: Path = tmp_path_factory.mktemp("loop")
    results = simulate_many(config, scenarios, folder)
    return {r.scenario.name: r.days for r in results}


def _entropy(days: list[dict], lo: int, hi: int) -> float:
    return float(np.mean([d["category_entropy"] for d in days[lo:hi]]))


def test_without_diversity_and_exploration_category_entropy_falls(runs):
    off, defaults = runs["off"], runs["defaults"]
    first, last = _entropy(off, 0, 5), _entropy(off, 25, 30)
    assert last < first - 0.1, [d["category_entropy"] for d in off]
    # the same world with the defaults does not narrow like that (paired: same seed, same model)
    change = _entropy(defaults, 25, 30) - _entropy(defaults, 0, 5)
    assert change > 0.5 * (last - first), [d["category_entropy"] for d in defaults]


def test_the_defaults_keep_entropy_above_the_floor(runs):
    defaults, off = runs["defaults"], runs["off"]
    entropies = [d["category_entropy"] for d in defaults]
    assert min(entropies) >= FLOOR_BITS, entropies
    assert _entropy(defaults, 0, 30) > _entropy(off, 0, 30) + 0.3
    assert _entropy(off, 20, 30) < FLOOR_BITS - 0.15  # the floor is not a given
