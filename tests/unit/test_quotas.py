"""The quota learner: greedy water-filling on hand-checkable cases, and learning inside ``Retriever.fit``."""

import numpy as np
import pyarrow as pa
import pytest
import scipy.sparse as sp

from funnel.core.errors import ValidationError
from funnel.retrieval.quotas import greedy_path, greedy_slots, history_query, learn_quotas
from funnel.retrieval.retriever import Retriever
from funnel.retrieval.sources import make_source, retrieval_data

DAY = 86_400_000


def truth(rows, m=12):
    """Binary held-out matrix with ``rows[u]`` the held-out items of user ``u``."""
    dense = np.zeros((len(rows), m), dtype=np.float32)
    for u, items in enumerate(rows):
        dense[u, list(items)] = 1
    return sp.csr_matrix(dense)


def test_source_that_finds_every_hit_gets_all_slots():
    test = truth([[0, 1], [2, 3]])
    lists = {
        "good": [np.array([0, 1, 8, 9]), np.array([2, 3, 8, 9])],
        "bad": [np.array([10, 11, 4, 5]), np.array([10, 11, 6, 7])],
    }
    assert greedy_slots(lists, test, total=2, block=1) == {"good": 2, "bad": 0}
    assert greedy_slots(lists, test, total=4, block=2) == {"good": 2, "bad": 0}  # nothing left to find


def test_complementary_sources_both_get_slots():
    test = truth([[0, 5], [1, 6]])
    lists = {  # a finds the first hit of each user at rank 0, b the second
        "a": [np.array([0, 8, 9]), np.array([1, 8, 9])],
        "b": [np.array([5, 10, 11]), np.array([6, 10, 11])],
    }
    assert greedy_slots(lists, test, total=2, block=1) == {"a": 1, "b": 1}


def test_overlap_costs_nothing_and_hits_are_weighted_per_user():
    # user 0 has 1 held-out item (worth 1), user 1 has 4 (worth 1/4 each)
    test = truth([[0], [1, 2, 3, 4]])
    lists = {
        "few": [np.array([0, 7]), np.array([8, 9])],  # the one hit of user 0: recall +0.5
        "many": [np.array([7, 10]), np.array([1, 11])],  # one of user 1's four: recall +0.125
    }
    assert greedy_slots(lists, test, total=1, block=1) == {"few": 1, "many": 0}


def test_path_snapshots_smaller_budgets():
    test = truth([[0, 5], [1, 6]])
    lists = {"a": [np.array([0, 8, 9]), np.array([1, 8, 9])], "b": [np.array([5, 10]), np.array([6, 10])]}
    assert greedy_path(lists, test, (1, 2), block=1) == [{"a": 1, "b": 0}, {"a": 1, "b": 1}]


def test_no_lists_no_slots():
    assert greedy_slots({"a": [np.empty(0, np.int64)]}, truth([[0]]), total=5) == {"a": 0}


def synthetic(n_users=200, seed=0):
    """Users of two tastes; the last events of each user are what the validation split holds out."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        lo = 0 if u % 2 == 0 else 20
        for i in rng.choice(np.arange(lo, lo + 20), 8, replace=False):
            rows.append((f"u{u:03d}", f"i{i:02d}", int(rng.integers(0, 30 * DAY))))
    users, items, ts = zip(*rows, strict=True)
    return retrieval_data(pa.table({"user_id": list(users), "item_id": list(items), "timestamp": list(ts)}))


def test_learn_quotas_prefers_the_personal_source():
    data = synthetic()
    params = {"item_knn": {"shrink": 0.0}, "editorial": {}}

    def fit(d):
        return {name: make_source(name, **p).fit(d) for name, p in params.items()}

    got = learn_quotas(fit, data, total=10, max_users=100, min_group=10, budgets=(5,))
    assert sorted(got["warm"]) == [5, 10]
    assert got["warm"][10]["item_knn"] > 0 and got["warm"][10]["editorial"] == 0  # editorial has no list


def test_retriever_learns_saves_and_loads_quotas(tmp_path):
    data = synthetic()
    sources = {"item_knn": {"shrink": 0.0}, "trending": {}}
    r = Retriever(sources, "learn", total=10, learn={"min_group": 10}).fit(data)
    assert set(r.learned_quotas_["warm"][10]) == {"item_knn", "trending"}
    assert r.overfetch_ >= r.overfetch
    q = history_query(data, np.arange(3))
    quotas = r.user_quotas(q, 10)
    assert all(abs(sum(x.values()) - 10) < 1e-9 for x in quotas)
    r.save(tmp_path / "r")
    again = Retriever.load(tmp_path / "r")
    assert again.quotas == "learn" and again.learned_quotas_ == r.learned_quotas_
    assert again.user_quotas(q, 10) == quotas
    assert [m.items.tolist() for m in again.retrieve(q)] == [m.items.tolist() for m in r.retrieve(q)]


def test_retriever_learns_fusion_weights_and_asks_each_source_for_overfetch_times_total(tmp_path):
    data = synthetic()
    sources = {"item_knn": {"shrink": 0.0}, "trending": {}, "editorial": {}}
    r = Retriever(sources, "learn", total=10, learn={"min_group": 10}, merge_by="fusion").fit(data)
    weights = r.learned_quotas_["warm"][10]
    assert max(weights.values()) == 1.0 and weights["editorial"] == 0.0  # editorial has no list
    assert r.overfetch_ == r.overfetch and r.fetch_count(3.0, 10) == 15 and r.fetch_count(0.0, 10) == 0
    q = history_query(data, np.arange(5))
    merged = r.retrieve(q)
    assert all(0 < len(m) <= 10 for m in merged)
    r.save(tmp_path / "r")
    again = Retriever.load(tmp_path / "r")
    assert again.merge_by == "fusion" and again.learned_quotas_ == r.learned_quotas_
    assert [m.items.tolist() for m in again.retrieve(q)] == [m.items.tolist() for m in merged]


def test_unknown_merge_is_rejected():
    with pytest.raises(ValidationError):
        Retriever(merge_by="union")
