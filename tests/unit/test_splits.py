import time

import numpy as np
import pyarrow as pa
import pytest

from funnel.core.errors import ValidationError
from funnel.core.interactions import Interactions
from funnel.eval.splits import Split, make_split, n_train_items


def _inter(users, items, ts=None, types=None) -> Interactions:
    cols = {"user_id": [str(u) for u in users], "item_id": [str(i) for i in items]}
    cols["timestamp"] = list(ts) if ts is not None else list(range(len(users)))
    if types is not None:
        cols["type"] = list(types)
    return Interactions.from_table(pa.table(cols))


def _random_inter(n_users=300, n_items=80, n=4000, seed=0) -> Interactions:
    rng = np.random.default_rng(seed)
    return _inter(rng.integers(0, n_users, n), rng.integers(0, n_items, n), rng.integers(1, 10**6, n))


def test_n_train_items_rounds_half_to_even_and_keeps_one():
    # 0.75·n = 0.75, 1.5, 2.25, 3, 3.75, 4.5, 7.5 -> 1, 2, 2, 3, 4, 4, 8
    assert n_train_items(np.array([1, 2, 3, 4, 5, 6, 10]), 0.75).tolist() == [1, 2, 2, 3, 4, 4, 8]
    assert n_train_items(np.array([0, 1, 3]), 0.1).tolist() == [0, 1, 1]


@pytest.mark.parametrize("protocol", ["strat", "usertemporal", "temporal"])
def test_split_is_a_disjoint_partition_of_the_deduplicated_positives(protocol):
    inter = _random_inter()
    s = make_split(inter, protocol, 0.75, seed=1)
    assert isinstance(s, Split) and s.protocol == protocol
    full = inter.to_csr()
    assert s.train.shape == s.test.shape == full.shape
    assert s.train.dtype == s.test.dtype == np.float32
    assert s.train.multiply(s.test).nnz == 0
    union = s.train + s.test
    assert (union != full).nnz == 0 or protocol == "temporal"  # temporal drops history-less users
    assert set(np.unique(union.data)) == {1.0}


def test_strat_counts_per_user_and_users_with_one_or_two_items_stay_in_train():
    users = [0] * 1 + [1] * 2 + [2] * 3 + [3] * 6 + [4] * 10
    inter = _inter(users, range(len(users)))
    s = make_split(inter, "strat", 0.75, seed=3)
    assert np.diff(s.train.indptr).tolist() == [1, 2, 2, 4, 8]
    assert np.diff(s.test.indptr).tolist() == [0, 0, 1, 2, 2]
    assert s.test_users.tolist() == [2, 3, 4]


def test_strat_is_seeded_and_random():
    inter = _random_inter()
    a, b = make_split(inter, "strat", 0.75, seed=7), make_split(inter, "strat", 0.75, seed=7)
    c = make_split(inter, "strat", 0.75, seed=8)
    assert (a.test != b.test).nnz == 0
    assert (a.test != c.test).nnz > 0
    assert a.seed == 7


def test_duplicates_collapse_and_negatives_are_not_positives():
    # user 0 watched item a three times and skipped item s: one positive (a), never s
    inter = _inter(
        ["u"] * 5 + ["v"] * 4,
        ["a", "a", "a", "s", "b", "a", "b", "c", "d"],
        types=["click", "view", "like", "skip", "click", "click", "click", "click", "click"],
    )
    s = make_split(inter, "strat", 0.5, seed=0)
    u = inter.users.get("u")
    assert (s.train + s.test)[u].nnz == 2
    assert (s.train + s.test)[u, inter.items.get("s")] == 0


def test_usertemporal_tests_the_latest_items_of_users_with_five_or_more():
    # user "a": 8 items at times 8..1 (item i at time 8 - i); user "b": 4 items -> train only
    users = ["a"] * 8 + ["b"] * 4
    items = [f"i{j}" for j in range(8)] + ["i0", "i1", "i2", "i3"]
    ts = [8 - j for j in range(8)] + [1, 2, 3, 4]
    inter = _inter(users, items, ts)
    s = make_split(inter, "usertemporal", 0.75)
    a, b = inter.users.get("a"), inter.users.get("b")
    latest = sorted(inter.items.get(f"i{j}") for j in (0, 1))  # times 8 and 7
    assert s.test[a].indices.tolist() == latest
    assert s.test[b].nnz == 0 and s.train[b].nnz == 4
    assert s.seed is None


def test_usertemporal_always_leaves_one_test_item():
    inter = _inter(["a"] * 5, [f"i{j}" for j in range(5)], range(5))
    s = make_split(inter, "usertemporal", 0.95)  # round(4.75) = 5 would leave no test
    assert s.test.nnz == 1 and s.train.nnz == 4


def test_usertemporal_keeps_the_first_occurrence_time_of_a_repeated_item():
    # item x is first seen at t=1 and again at t=10: it is an old item, not the latest one
    inter = _inter(["a"] * 6, ["x", "p", "q", "r", "s", "x"], [1, 2, 3, 4, 5, 10])
    s = make_split(inter, "usertemporal", 0.8)  # 5 distinct items -> 4 train, 1 test
    assert inter.items.keys_of(s.test[0].indices) == ["s"]


def test_temporal_cuts_globally_and_drops_history_less_test_users():
    # times 1..8; ratio 0.75 -> cut at the lower 0.75-quantile = 6
    inter = _inter(["a", "a", "a", "b", "a", "b", "a", "c"], list("pqrstuvw"), range(1, 9))
    s = make_split(inter, "temporal", 0.75)
    assert s.cut_timestamp == 6
    a, b, c = (inter.users.get(x) for x in "abc")
    assert s.train.nnz == 6
    assert inter.items.keys_of(s.test[a].indices) == ["v"]
    assert s.test[c].nnz == 0 and s.train[c].nnz == 0  # c only appears after the cut
    assert s.test_users.tolist() == [a]
    assert s.test[b].nnz == 0


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.5, 1.5])
def test_ratio_must_be_a_fraction(ratio):
    with pytest.raises(ValidationError, match="ratio"):
        make_split(_random_inter(), "strat", ratio)


def test_unknown_protocol():
    with pytest.raises(ValidationError, match="unknown protocol"):
        make_split(_random_inter(), "loo")


def test_empty_interactions():
    inter = _inter([], [])
    for protocol in ("strat", "usertemporal", "temporal"):
        s = make_split(inter, protocol)
        assert s.train.nnz == 0 and s.test.nnz == 0


def test_split_is_vectorised_on_a_million_events():
    inter = _random_inter(n_users=50_000, n_items=20_000, n=1_000_000, seed=5)
    for protocol in ("strat", "usertemporal", "temporal"):
        t = time.perf_counter()
        s = make_split(inter, protocol, 0.75, seed=1)
        assert time.perf_counter() - t < 10
        assert s.test.nnz > 0


def _random_events(seed: int, n_users: int, per_user: int, n_items: int) -> Interactions:
    """``per_user`` events for each of ``n_users`` users on random items, one a second."""
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(n_users), per_user)
    items = rng.integers(0, n_items, users.size)
    table = pa.table({"user_id": [f"u{u}" for u in users], "item_id": [f"i{i}" for i in items],
                      "timestamp": np.arange(users.size, dtype=np.int64) * 1000})  # fmt: skip
    return Interactions.from_table(table)


def test_with_test_users_samples_rows_and_keeps_training():
    split = make_split(_random_events(3, 40, 6, 30), "strat", 0.5, seed=1)
    n = len(split.test_users)
    assert n > 12
    small = split.with_test_users(12, seed=5)
    assert len(small.test_users) == 12 and set(small.test_users) <= set(split.test_users)
    assert (small.train != split.train).nnz == 0  # training untouched
    for u in small.test_users:  # a kept user's test row is whole
        assert np.array_equal(np.sort(small.test[u].indices), np.sort(split.test[u].indices))
    assert np.array_equal(split.with_test_users(12, seed=5).test_users, small.test_users)  # seeded
    assert split.with_test_users(n) is split


def test_evaluate_models_scores_at_most_max_test_users():
    from funnel.eval.runner import evaluate_models

    inter = _random_events(4, 60, 5, 25)
    full = evaluate_models(inter, "strat", 5, ["pop"], ratio=0.6, progress=False)
    capped = evaluate_models(inter, "strat", 5, ["pop"], ratio=0.6, progress=False, max_test_users=10)
    assert full.n_users > 10 and capped.n_users == 10
