"""Unit tests of the simulator's parts: scenarios, world, population, behaviour, metrics, files."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from funnel.core.errors import ConfigError, CorruptDataError
from funnel.data.synthetic import SyntheticConfig, generate
from funnel.data.synthetic.config import DAY_MS
from funnel.simulation.behaviour import Behaviour
from funnel.simulation.config import Scenario, SimConfig, load_scenarios
from funnel.simulation.io import metrics_json, read_daily, read_simulation, write_simulation
from funnel.simulation.metrics import DayAccumulator, ReachTracker, day_metrics, item_categories
from funnel.simulation.population import Population
from funnel.simulation.runner import SimResult
from funnel.simulation.world import START_MS, build_world, truth_index

# ---- scenarios -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"explore_rate": 1.5}, "explore_rate must be in [0, 1]"),
        ({"mmr_lambda": -0.1}, "mmr_lambda must be in [0, 1]"),
        ({"retrain_days": 1.5}, "retrain_days must be an integer"),
        ({"new_items_per_day": -1}, "new_items_per_day must be in [0, 10000]"),
        ({"head_weights": {"nope": 1}}, "unknown head"),
        ({"head_weights": [1]}, "head_weights must be an object"),
        ({"explore": 0.1}, "unknown key(s) ['explore']"),
        ({"gate": "yes"}, "gate must be true or false"),
        ({"name": ""}, "name must be a non-empty string"),
    ],
)
def test_bad_scenarios_are_refused_with_the_key(raw, message):
    with pytest.raises(ConfigError) as err:
        Scenario.from_dict(raw)
    assert message in str(err.value)


def test_scenario_file_forms_and_overrides(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"scenarios": [{"name": "a", "explore_rate": 0.1}, {"name": "b"}]}))
    a, b = load_scenarios(path)
    assert (a.name, a.explore_rate, b.explore_rate) == ("a", 0.1, Scenario().explore_rate)
    assert a.overrides().rerank == {"explore_rate": 0.1, "explore_rate_cold": 0.1, "mmr_lambda": 0.2}
    path.write_text(json.dumps({"name": "solo", "head_weights": {"like": 2}}))
    (solo,) = load_scenarios(path)
    assert solo.overrides().head_weights == {"like": 2.0}
    path.write_text(json.dumps([{"name": "x"}, {"name": "x"}]))
    with pytest.raises(ConfigError, match="unique"):
        load_scenarios(path)
    path.write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_scenarios(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_scenarios(tmp_path / "missing.json")


def test_sim_config_checks_sizes():
    with pytest.raises(ConfigError, match="users must be an integer"):
        SimConfig(users=1)
    with pytest.raises(ConfigError, match="visits_per_day"):
        SimConfig(visits_per_day=0)


# ---- world -----------------------------------------------------------------------------------


def test_world_arrivals_history_and_cold_users():
    cfg = SimConfig(users=200, days=10, n_items=300, history_days=20, history_per_user=10)
    world = build_world(cfg, Scenario(new_items_per_day=3, cold_user_share=0.25))
    truth = world.truth
    arrivals = world.arrivals(START_MS, START_MS + 10 * DAY_MS)
    # the generator spreads 3 * 30 / 300 = 30% of the items over 30 days: ~30 land in the run's 10
    assert 15 <= len(arrivals) <= 45
    assert world.initial_items().num_rows == 300 - len(arrivals)
    cold = np.flatnonzero(truth.user_created_ms >= START_MS)
    assert len(cold) == 50 and (truth.user_created_ms[cold] < START_MS + 10 * DAY_MS).all()
    ts = world.history.column("timestamp").cast(pa.int64()).to_numpy()
    assert len(ts) > 1000 and ts.max() < START_MS
    users = set(truth_index(world.history.column("user_id").to_pylist(), "u").tolist())
    assert not users & set(cold.tolist())  # arrivals come without history
    items = truth_index(pc.unique(world.history.column("item_id")).to_pylist())
    assert (truth.item_published_ms[items] < START_MS).all()
    # tastes keep drifting during the run: the truth's window ends with the last simulated day
    assert truth.end_ms == START_MS + 10 * DAY_MS


def test_world_is_a_function_of_its_config():
    cfg = SimConfig(users=50, days=3, n_items=80, history_per_user=5)
    a, b = build_world(cfg, Scenario()), build_world(cfg, Scenario())
    assert a.history.equals(b.history) and a.items.equals(b.items)
    c = build_world(SimConfig(users=50, days=3, n_items=80, history_per_user=5, seed=1), Scenario())
    assert not a.history.equals(c.history)


# ---- population ------------------------------------------------------------------------------


def _population(visits: float = 1.0) -> Population:
    truth = SimpleNamespace(user_created_ms=np.array([0, 0, 0, 15_000]), user_activity=np.ones(4))
    return Population(truth, start_ms=0, visits_per_day=visits, day_ms=10_000)


def test_population_arrivals_leaving_and_retention():
    pop = _population()
    assert pop.retention(9_999) == 1.0 and pop.arrived(9_999).sum() == 3
    pop.leave(np.array([0, 0]), np.array([5_000, 7_000]))
    assert pop.left_ms[0] == 5_000  # the first departure counts
    assert pop.retention(6_000) == pytest.approx(2 / 3)
    assert pop.retention(20_000) == pytest.approx(3 / 4)  # user 3 arrived at 15 000
    users, _ = pop.visits(1, np.random.default_rng(0))
    assert 0 not in users.tolist()
    gone = pop.churn(1, 1.0, np.random.default_rng(0))
    assert sorted(gone.tolist()) == [1, 2, 3] and pop.retention(20_000) == 0.0


def test_visits_follow_activity_and_arrival_times():
    pop = _population(visits=3.0)
    rng = np.random.default_rng(1)
    counts = np.zeros(4)
    for day in range(1, 41):
        users, times = pop.visits(day, rng)
        assert (np.diff(times) >= 0).all()
        assert ((times >= day * 10_000) & (times < (day + 1) * 10_000)).all()
        counts += np.bincount(users, minlength=4)
    assert np.allclose(counts / 40, 3.0, atol=0.5)  # Poisson(3) per day, all four here from day 2
    users, times = pop.visits(1, np.random.default_rng(2))
    assert (times[users == 3] >= 15_000).all()  # not before arriving


# ---- behaviour -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def truth():
    return generate(SyntheticConfig(n_users=20, n_items=40, n_interactions=200, seed=3)).truth


def test_click_probability_is_the_truths_with_fatigue(truth):
    b = Behaviour(truth, fatigue=0.3, leave_rate=0.0)
    users, times = np.array([2, 5]), np.array([truth.end_ms, truth.end_ms])
    pages = np.array([[1, 2, 3], [4, -1, -1]])
    p0 = b.probabilities(users, times, pages)
    aff = truth.affinity_pairs(np.array([2, 2, 2]), np.array([1, 2, 3]), truth.end_ms)
    assert np.allclose(p0[0], truth.click_probability(aff, np.arange(3)))
    assert p0[1, 1] == 0.0 and p0[1, 2] == 0.0
    b.respond(users, times, pages, np.random.default_rng(0))
    b.respond(users, times, pages, np.random.default_rng(0))
    assert np.allclose(b.probabilities(users, times, pages), p0 * 0.7**2)
    assert np.allclose(b.expected(users, times, pages), p0)  # the regret's pages carry no fatigue


def test_leaving_after_a_page_without_clicks(truth):
    b = Behaviour(truth, fatigue=0.0, leave_rate=1.0)
    pages = np.array([[-1, -1], [0, 1]])
    r = b.respond(np.array([0, 1]), np.array([truth.end_ms] * 2), pages, np.random.default_rng(0))
    assert r.left[0] and r.left[1] == (not r.clicked[1].any())


def test_oracle_is_the_best_allowed_page(truth):
    b = Behaviour(truth, fatigue=0.0, leave_rate=0.0)
    t = truth.end_ms
    allowed = (truth.item_region < 0) & (truth.item_age_rating < 2)
    available = allowed & (truth.item_published_ms <= t)
    user = np.array([4])
    aff = truth.affinity(4, None, t)
    best = np.argsort(-np.where(available, aff, -np.inf))[:3]
    expected = truth.click_probability(aff[best], np.arange(3)).sum()
    assert b.oracle(user, np.array([t]), 3, available, [np.zeros(0, np.int64)])[0] == pytest.approx(expected)
    # consuming the best item moves the oracle to the next ones
    second = np.argsort(-np.where(available, aff, -np.inf))[1:4]
    expected2 = truth.click_probability(aff[second], np.arange(3)).sum()
    got = b.oracle(user, np.array([t]), 3, available, [best[:1]])[0]
    assert got == pytest.approx(expected2) and got < expected
    # any page of available items does no better than the oracle
    rng = np.random.default_rng(0)
    for _ in range(20):
        page = rng.choice(np.flatnonzero(available), 3, replace=False)[None, :]
        assert b.expected(user, np.array([t]), page).sum() <= expected + 1e-9


# ---- metrics ---------------------------------------------------------------------------------


def test_day_metrics_by_hand():
    # items 0,1 in category 0; item 2 in categories 1 and 2; item 3 unserved; item 4 not available
    cats = item_categories(np.array([[0, -1], [0, -1], [1, 2], [1, -1], [0, -1]]))
    acc = DayAccumulator()
    day0 = 10 * DAY_MS
    acc.add(
        users=np.array([7, 8]),
        times=np.array([day0 + 5, day0 + 6]),
        pages=np.array([[0, 1], [0, 2]]),
        clicked=np.array([[True, False], [False, True]]),
        expected=np.array([0.5, 0.4]),
        oracle=np.array([0.9, 0.6]),
    )
    published = np.array([0, 0, day0 - 2 * DAY_MS, 0, 0])
    available = np.array([True, True, True, True, False])
    row = day_metrics(3, acc, cats, published, available, 0.75, 1, np.array([30.0, 50.0]))
    assert row["ctr"] == 0.5 and row["clicks"] == 2 and row["active_users"] == 2
    assert row["engagement"] == 1.0 and row["coverage"] == 0.75  # 3 of the 4 available
    # page 1: one category -> 0 bits; page 2: {0: 1/2, 1: 1/4, 2: 1/4} -> 1.5 bits; mean 0.75
    assert row["category_entropy"] == pytest.approx(0.75)
    assert row["exposure_gini"] == pytest.approx(0.375)  # counts (2, 1, 1, 0)
    assert row["new_item_click_share"] == 0.5 and row["new_item_slot_share"] == 0.25  # item 2 is new
    assert row["regret"] == pytest.approx(0.3) and row["hours_to_100"] == 40.0
    assert row["retention"] == 0.75 and row["users_left"] == 1


def test_empty_day_is_valid_json():
    row = day_metrics(
        0,
        DayAccumulator(),
        item_categories(np.array([[0, -1]])),
        np.zeros(1),
        np.ones(1, bool),
        1.0,
        0,
        np.zeros(0),
    )
    assert row["pages"] == 0 and row["ctr"] is None and row["hours_to_100"] is None
    json.dumps(row, allow_nan=False)


def test_reach_tracker_counts_new_items_only():
    reach = ReachTracker(np.array([0, 3_600_000, 7_200_000]), start_ms=1)
    reach.add(np.array([0] * 150 + [1] * 99 + [-1]), at_ms=10_800_000)
    reach.add(np.array([1, 2]), at_ms=14_400_000)
    assert reach.hours(0, 20_000_000).tolist() == [3.0]  # item 1: 4 h - 1 h; item 0 predates the run
    assert reach.summary() == {"new_items": 2, "reached_100_share": 0.5, "median_hours_to_100": 3.0}


# ---- files -----------------------------------------------------------------------------------


def test_results_round_trip_with_a_format_version(tmp_path):
    cfg = SimConfig(users=10, days=2)
    days = [{"day": 0, "ctr": 0.1, "hours_to_100": None}, {"day": 1, "ctr": 0.2, "hours_to_100": 5.0}]
    results = [SimResult(Scenario(name="a"), days, {"pages": 4}), SimResult(Scenario(name="b"), days, {})]
    folder = write_simulation(tmp_path / "out", cfg, results)
    doc = read_simulation(folder)
    assert doc["scenarios"]["a"]["days"] == days and doc["config"]["users"] == 10
    assert (folder / "simulation.json").read_text() == metrics_json(cfg, results)
    table = read_daily(folder)
    assert table.column("scenario").to_pylist() == ["a", "a", "b", "b"]
    assert table.column("ctr").to_pylist() == [0.1, 0.2, 0.1, 0.2]
    broken = json.loads((folder / "simulation.json").read_text())
    broken["format_version"] = 99
    (folder / "simulation.json").write_text(json.dumps(broken))
    with pytest.raises(CorruptDataError, match="format_version 99"):
        read_simulation(folder)
    assert math.isfinite(doc["scenarios"]["a"]["days"][1]["hours_to_100"])
