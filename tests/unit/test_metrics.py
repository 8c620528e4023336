"""Hand-computed checks of every metric in funnel.eval.metrics.

The worked example (k = 3, 6 items):

    user  test items     recs         hits     |T|  m=min(|T|,k)
    u0    {1, 3}         [1, 2, 3]    1 0 1    2    2
    u1    {0, 2, 4, 5}   [5, -1, -1]  1 0 0    4    3
    u2    {}             [0, 1, 2]    (skipped: no test items)
    u3    {4}            [0, 1, 4]    0 0 1    1    1

    precision: u0 2/3, u1 1/3, u3 1/3                     -> mean 4/9 = 0.444444
    recall:    u0 2/2, u1 1/4, u3 1/1                     -> mean 2.25/3 = 0.75
    DCG:       u0 1/log2(2) + 1/log2(4) = 1.5; u1 1; u3 1/log2(4) = 0.5
    IDCG:      u0 1 + 1/log2(3) = 1.630930; u1 1 + 0.630930 + 0.5 = 2.130930; u3 1
    NDCG:      u0 0.919720, u1 0.469279, u3 0.5           -> mean 0.629666
    AP:        u0 (1/1 + 2/3)/2 = 0.833333; u1 (1/1)/3 = 0.333333; u3 (1/3)/1 = 0.333333 -> MAP 0.5
    MRR:       u0 1, u1 1, u3 1/3                          -> mean 0.777778
"""

import math

import numpy as np
import pytest
import scipy.sparse as sp

from funnel.eval import metrics as M  # noqa: N812

TEST = sp.csr_matrix(
    np.array(
        [
            [0, 1, 0, 1, 0, 0],
            [1, 0, 1, 0, 1, 1],
            [0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 1, 0],
        ],
        dtype=np.float32,
    )
)
RECS = np.array([[1, 2, 3], [5, -1, -1], [0, 1, 2], [0, 1, 4]])


def test_hits_marks_test_items_and_never_padding():
    assert M.hits(RECS, TEST).tolist() == [
        [True, False, True],
        [True, False, False],
        [False, False, False],
        [False, False, True],
    ]


def test_padding_does_not_collide_with_previous_rows_last_item():
    # key(row 1, item -1) == key(row 0, item n-1) if padding were not masked
    test = sp.csr_matrix(np.array([[0, 0, 1], [1, 0, 0]], dtype=np.float32))
    assert M.hits(np.array([[0], [-1]]), test).tolist() == [[False], [False]]


def test_ranking_metrics_hand_computed():
    r = M.ranking_metrics(RECS, TEST)
    assert r["precision"] == pytest.approx(4 / 9)
    assert r["recall"] == pytest.approx(0.75)
    ndcg = (1.5 / (1 + 1 / math.log2(3)) + 1 / (1 + 1 / math.log2(3) + 0.5) + 0.5) / 3
    assert r["ndcg"] == pytest.approx(ndcg)
    assert r["ndcg"] == pytest.approx(0.629666, abs=1e-6)
    assert r["map"] == pytest.approx(0.5)
    assert r["mrr"] == pytest.approx(7 / 9)


def test_single_metric_functions_agree():
    assert M.ndcg_at_k(RECS, TEST) == pytest.approx(0.629666, abs=1e-6)
    assert M.recall_at_k(RECS, TEST) == pytest.approx(0.75)
    assert M.precision_at_k(RECS, TEST) == pytest.approx(4 / 9)
    assert M.map_at_k(RECS, TEST) == pytest.approx(0.5)
    assert M.mrr(RECS, TEST) == pytest.approx(7 / 9)


def test_cutoff_k_uses_the_first_k_columns():
    # k=1: u0 hit (ndcg 1, recall 1/2), u1 hit (ndcg 1, recall 1/4), u3 miss
    r = M.ranking_metrics(RECS, TEST, k=1)
    assert r["ndcg"] == pytest.approx(2 / 3)
    assert r["recall"] == pytest.approx(0.25)
    assert r["precision"] == pytest.approx(2 / 3)
    assert r["mrr"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        M.ranking_metrics(RECS, TEST, k=4)


def test_per_user_arrays_skip_users_without_test_items():
    r = M.per_user_ranking_metrics(RECS, TEST)
    assert r["ndcg"].shape == (3,)
    np.testing.assert_allclose(r["mrr"], [1, 1, 1 / 3])
    np.testing.assert_allclose(r["map"], [5 / 6, 1 / 3, 1 / 3])


def test_perfect_list_scores_one_and_empty_test_scores_zero():
    test = sp.csr_matrix(np.array([[1, 1, 0, 0]], dtype=np.float32))
    r = M.ranking_metrics(np.array([[1, 0]]), test)
    assert r == pytest.approx({"ndcg": 1.0, "recall": 1.0, "precision": 1.0, "map": 1.0, "mrr": 1.0})
    empty = M.ranking_metrics(np.array([[0, 1]]), sp.csr_matrix((1, 4), dtype=np.float32))
    assert empty == {"ndcg": 0.0, "recall": 0.0, "precision": 0.0, "map": 0.0, "mrr": 0.0}


def test_rows_must_match():
    with pytest.raises(ValueError):
        M.hits(RECS[:2], TEST)


def test_coverage_counts_distinct_items_ignoring_padding():
    assert M.coverage(np.array([[0, 1], [1, -1]]), 4) == 0.5
    assert M.coverage(RECS, 12) == pytest.approx(6 / 12)


# novelty: 4 users with items; item 0 seen by 4, item 1 by 2, item 2 by 1, item 3 by nobody;
# bits: 0, 1, 2, and 2 for item 3 (counted as 1 user). The last user row is empty: U = 4.
TRAIN = sp.csr_matrix(
    np.array([[1, 1, 1, 0], [1, 1, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]], dtype=np.float32)
)


def test_novelty_hand_computed():
    # user A: (1 + 2) / 2 = 1.5; user B: 0; an all-padding list is skipped -> 0.75
    assert M.novelty(np.array([[1, 2], [0, -1], [-1, -1]]), TRAIN) == pytest.approx(0.75)
    assert M.novelty(np.array([[3, 0]]), TRAIN) == pytest.approx(1.0)  # (2 + 0) / 2


# diversity vectors: item 0 = (1, 0), item 1 = (1, 1), item 2 = (0, 1), item 3 = (0, 0)
VECTORS = sp.csr_matrix(np.array([[1, 0], [1, 1], [0, 1], [0, 0]], dtype=np.float32))


def test_diversity_hand_computed():
    # list [0, 1, 2]: distances 1 - 1/√2, 1, 1 - 1/√2 -> (3 - √2) / 3 = 0.528595
    assert M.diversity(np.array([[0, 1, 2]]), VECTORS) == pytest.approx((3 - math.sqrt(2)) / 3)
    # [0, 3, -1]: one pair with a zero vector -> distance 1; [2, -1, -1]: no pair, skipped
    recs = np.array([[0, 1, 2], [0, 3, -1], [2, -1, -1]])
    assert M.diversity(recs, VECTORS) == pytest.approx(((3 - math.sqrt(2)) / 3 + 1) / 2)
    assert M.diversity(np.array([[2, -1]]), VECTORS) == 0.0


def test_diversity_matches_brute_force_with_chunked_gram(monkeypatch):
    rng = np.random.default_rng(0)
    V = sp.random(300, 80, density=0.05, random_state=1, format="csr")
    recs = rng.integers(-1, 300, size=(50, 6))
    unit = V.toarray() / np.maximum(np.linalg.norm(V.toarray(), axis=1), 1e-300)[:, None]
    expected = []
    for row in recs:
        items = row[row >= 0]
        if len(items) >= 2:
            cos = unit[items] @ unit[items].T
            expected.append((1 - cos[np.triu_indices(len(items), 1)]).mean())
    assert M.diversity(recs, V) == pytest.approx(np.mean(expected))
    monkeypatch.setattr(M, "_GRAM_ROWS", 7)
    assert M.diversity(recs, V) == pytest.approx(np.mean(expected))
