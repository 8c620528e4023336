import math
import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from funnel.core.artifacts import save_artifact
from funnel.core.errors import ConfigError, CorruptDataError, ResourceLimitError, ValidationError
from funnel.retrieval import base
from funnel.retrieval.als import ALSRecommender
from funnel.retrieval.base import topk
from funnel.retrieval.ease import EASERecommender
from funnel.retrieval.item_knn import ItemKNNRecommender
from funnel.retrieval.models import load_model, make_model
from funnel.retrieval.popularity import PopularityRecommender


def csr(rows) -> sp.csr_matrix:
    return sp.csr_matrix(np.asarray(rows, dtype=np.float32))


def random_binary(n_users=200, n_items=60, density=0.08, seed=0) -> sp.csr_matrix:
    X = sp.random(n_users, n_items, density=density, random_state=seed, format="csr", dtype=np.float32)
    X.data[:] = 1.0
    return X


# --- topk -------------------------------------------------------------------------------------


def test_topk_orders_excludes_and_pads():
    s = np.array([[0.5, 2.0, -1.0, 3.0], [1.0, -np.inf, 0.0, 0.0]], dtype=np.float32)
    ex = csr([[0, 0, 0, 1], [0, 0, 0, 0]])
    items, scores = topk(s, 6, ex)
    assert items[0].tolist() == [1, 0, 2, -1, -1, -1]  # item 3 excluded
    assert items[1, 0] == 0 and set(items[1, 1:3]) == {2, 3} and (items[1, 3:] == -1).all()  # -inf is padding
    assert scores[0, :3].tolist() == [2.0, 0.5, -1.0] and np.isneginf(scores[0, 3:]).all()
    assert s[0, 3] == 3.0  # not modified unless inplace
    assert topk(s, 1)[0].tolist() == [[3], [0]]


def test_topk_inplace_and_bad_k():
    s = np.array([[1.0, 2.0]], dtype=np.float32)
    topk(s, 1, csr([[0, 1]]), inplace=True)
    assert np.isneginf(s[0, 1])
    with pytest.raises(ValidationError):
        topk(s, 0)


# --- popularity -------------------------------------------------------------------------------


def test_popularity_counts_distinct_users_and_ranks_by_them():
    # item 2: users 0, 1, 2 (user 0 twice / with weight 5 -> still one user); item 0: user 3 only
    X = sp.csr_matrix(
        (
            np.array([5, 1, 1, 1, 1, 1], dtype=np.float32),
            (np.array([0, 0, 1, 2, 3, 0]), np.array([2, 2, 2, 2, 0, 1])),
        ),
        shape=(4, 3),
    )
    model = PopularityRecommender().fit(X)
    assert model.item_counts_.tolist() == [1, 1, 3]
    items, scores = model.recommend(csr([[0, 0, 0]]), 3)
    assert items[0, 0] == 2 and scores[0].tolist()[0] == 3.0
    items, _ = model.recommend(csr([[0, 0, 1]]), 3)
    assert set(items[0, :2]) == {0, 1} and items[0, 2] == -1


def test_popularity_fast_path_matches_full_ranking():
    X = random_binary()
    model = PopularityRecommender().fit(X)
    _, scores = model.recommend(X, 10)
    _, full_scores = topk(model._scores(X), 10, X)
    np.testing.assert_array_equal(scores, full_scores)


# --- item-kNN ---------------------------------------------------------------------------------


def test_itemknn_hand_computed_cosine_with_shrink():
    # columns: item0 = users {0, 1}, item1 = users {0, 1, 2}, item2 = user {2}
    X = csr([[1, 1, 0], [1, 1, 0], [0, 1, 1]])
    S = ItemKNNRecommender(k_neighbours=5, shrink=0.0).fit(X).neighbours_.toarray()
    assert S[0, 1] == pytest.approx(2 / math.sqrt(2 * 3))  # 0.8165
    assert S[1, 2] == pytest.approx(1 / math.sqrt(3))  # 0.5774
    assert S[0, 2] == 0 and np.diag(S).tolist() == [0, 0, 0]
    shrunk = ItemKNNRecommender(k_neighbours=5, shrink=2.0).fit(X).neighbours_.toarray()
    assert shrunk[0, 1] == pytest.approx(2 / (math.sqrt(6) + 2))
    # scores = history · S: a user with item 0 gets item 1 only (item 2 has no evidence)
    items, scores = ItemKNNRecommender(shrink=0.0).fit(X).recommend(csr([[1, 0, 0]]), 3)
    assert items.tolist() == [[1, -1, -1]] and scores[0, 0] == pytest.approx(0.8165, abs=1e-4)


def test_itemknn_keeps_k_neighbours_and_blocks_do_not_change_the_table(monkeypatch):
    X = random_binary(n_items=80, density=0.1)
    full = ItemKNNRecommender(k_neighbours=1000).fit(X).neighbours_.toarray()
    model = ItemKNNRecommender(k_neighbours=7).fit(X)
    assert np.diff(model.neighbours_.indptr).max() <= 7
    kept = model.neighbours_.toarray()
    np.testing.assert_allclose(np.sort(kept, axis=1)[:, -7:], np.sort(full, axis=1)[:, -7:], rtol=1e-6)
    monkeypatch.setattr(base, "SCORE_BLOCK_FLOATS", 50)  # many tiny blocks
    again = ItemKNNRecommender(k_neighbours=1000).fit(X).neighbours_.toarray()
    np.testing.assert_allclose(again, full, rtol=1e-6)


def test_itemknn_rejects_bad_parameters():
    with pytest.raises(ValidationError):
        ItemKNNRecommender(k_neighbours=0)
    with pytest.raises(ValidationError):
        ItemKNNRecommender(shrink=-1)


# --- EASE -------------------------------------------------------------------------------------


def reference_ease(X: sp.csr_matrix, l2: float) -> np.ndarray:
    G = (X.T @ X).toarray().astype(np.float64) + l2 * np.eye(X.shape[1])
    P = np.linalg.inv(G)
    B = -P / np.diag(P)[None, :]
    np.fill_diagonal(B, 0.0)
    return B


def test_ease_matches_the_closed_form():
    X = random_binary(n_items=700, density=0.05)  # > one 512-row mirroring block
    model = EASERecommender(l2=3.0).fit(X)
    active = np.flatnonzero(np.diff(X.tocsc().indptr))
    np.testing.assert_allclose(model.B_, reference_ease(X[:, active], 3.0), atol=2e-5)
    assert model.B_.dtype == np.float32 and model.B_.flags.c_contiguous


def test_ease_items_without_interactions_score_zero():
    X = csr([[1, 1, 0, 0], [1, 0, 1, 0], [0, 1, 1, 0]])  # item 3: nobody
    model = EASERecommender(l2=1.0).fit(X)
    assert model.item_index_.tolist() == [0, 1, 2] and model.B_.shape == (3, 3)
    scores = model._scores(csr([[1, 0, 0, 0]]))
    assert scores[0, 3] == 0.0
    B = reference_ease(X[:, :3], 1.0)
    np.testing.assert_allclose(scores[0, :3], B[0], atol=1e-6)


def test_ease_refuses_large_catalogues_with_an_actionable_message():
    X = random_binary(n_items=60, density=0.5)
    with pytest.raises(ResourceLimitError) as err:
        EASERecommender(max_items=50).fit(X)
    msg = str(err.value)
    assert "60" in msg and "max_items=50" in msg and "GiB" in msg
    assert "itemknn" in msg and "als" in msg and "raise max_items" in msg


def test_ease_memory_estimate_in_the_message():
    X = sp.csr_matrix(
        (np.ones(30_000, dtype=np.float32), (np.zeros(30_000), np.arange(30_000))), shape=(1, 30_000)
    )
    with pytest.raises(ResourceLimitError, match=r"30,000 items.*6\.7 GiB"):
        EASERecommender().fit(X)


def test_ease_rejects_non_positive_l2():
    with pytest.raises(ValidationError):
        EASERecommender(l2=0)


# --- ALS --------------------------------------------------------------------------------------


def test_als_scores_are_folded_in_factors_times_item_factors():
    X = random_binary()
    model = ALSRecommender(factors=8, iterations=5).fit(X)
    assert model.item_factors_.shape == (X.shape[1], 8) and model.item_factors_.dtype == np.float32
    U = model.user_factors(X[:5])
    np.testing.assert_allclose(model._scores(X[:5]), U @ model.item_factors_.T, rtol=1e-5)


def test_als_fold_in_solves_the_weighted_least_squares_problem():
    # x_u = (YᵀC_uY + λI)⁻¹ YᵀC_u p_u with c = 1 + alpha·x on observed items, 1 elsewhere
    X = random_binary()
    model = ALSRecommender(factors=6, iterations=4, alpha=7.0, regularization=0.5).fit(X)
    Y = model.item_factors_.astype(np.float64)
    row = X[3]
    c = np.ones(X.shape[1])
    c[row.indices] = 1 + 7.0 * row.data
    p = np.zeros(X.shape[1])
    p[row.indices] = 1.0
    expected = np.linalg.solve(Y.T @ (c[:, None] * Y) + 0.5 * np.eye(6), Y.T @ (c * p))
    np.testing.assert_allclose(model.user_factors(row)[0], expected, rtol=1e-3, atol=1e-5)


def test_als_does_not_warn_about_blas_threads():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ALSRecommender(factors=4, iterations=2).fit(random_binary())


def test_als_similar_items_are_cosine_of_factors():
    model = ALSRecommender(factors=4, iterations=3).fit(random_binary())
    items, scores = model.similar_items(np.array([0]), 3)
    unit = model.item_factors_ / np.linalg.norm(model.item_factors_, axis=1, keepdims=True)
    np.testing.assert_allclose(scores[0], unit[0] @ unit[items[0]].T, rtol=1e-5)
    assert (scores <= 1.0 + 1e-6).all()


# --- registry ---------------------------------------------------------------------------------


def test_make_model_errors():
    with pytest.raises(ConfigError, match="unknown model"):
        make_model("svd")
    with pytest.raises(ConfigError, match="bad parameters"):
        make_model("ease", lamda=3)


def test_load_model_unknown_kind(tmp_path):
    save_artifact(tmp_path, "mystery", 1, {}, {"x": np.zeros(1)})
    with pytest.raises(CorruptDataError, match="mystery"):
        load_model(tmp_path)


def test_saved_artifact_is_manifest_plus_npz_without_pickle(tmp_path):
    model = EASERecommender(l2=2.0).fit(random_binary(n_items=20))
    model.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arrays.npz", "manifest.json"]
    with np.load(tmp_path / "arrays.npz", allow_pickle=False) as npz:
        assert set(npz.files) == {"B", "item_index"}
    assert repr(load_model(tmp_path)) == "EASERecommender(l2=2.0, max_items=20000)"
