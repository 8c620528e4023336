"""The contract every baseline recommender honours (one suite, run for each registered model)."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from funnel.core.errors import CorruptDataError, NotTrainedError, ValidationError
from funnel.retrieval import base
from funnel.retrieval.base import Recommender
from funnel.retrieval.models import MODELS, load_model, make_model

SMALL = {
    "pop": {},
    "itemknn": {"k_neighbours": 20},
    "ease": {"l2": 5.0},
    "als": {"factors": 8, "iterations": 8, "regularization": 0.1},
}


def two_clusters(n_users=120, n_items=40, seed=0) -> sp.csr_matrix:
    """Users of cluster A like items 0..19, users of cluster B items 20..39 (plus a little noise)."""
    rng = np.random.default_rng(seed)
    X = np.zeros((n_users, n_items), dtype=np.float32)
    half = n_items // 2
    for u in range(n_users):
        lo = 0 if u % 2 == 0 else half
        X[u, rng.choice(np.arange(lo, lo + half), size=6, replace=False)] = 1.0
        X[u, rng.integers(0, n_items)] = 1.0
    return sp.csr_matrix(X)


X = two_clusters()


@pytest.fixture(params=sorted(MODELS))
def name(request) -> str:
    return request.param


@pytest.fixture
def fitted(name):
    return make_model(name, **SMALL[name]).fit(X)


def test_is_a_recommender_and_fit_returns_self(name):
    model = make_model(name, **SMALL[name])
    assert isinstance(model, Recommender)
    assert model.fit(X) is model
    assert model.is_fitted


def test_unfitted_model_refuses_to_serve(name):
    model = make_model(name)
    with pytest.raises(NotTrainedError):
        model.recommend(X[:2], 3)
    with pytest.raises(NotTrainedError):
        model.similar_items(np.array([0]), 3)
    with pytest.raises(NotTrainedError):
        model.save("/nonexistent/never-written")


def test_recommend_shapes_order_and_padding(fitted):
    items, scores = fitted.recommend(X[:10], 5)
    assert items.shape == scores.shape == (10, 5)
    assert items.dtype == np.int32 and scores.dtype == np.float32
    assert np.all(np.diff(scores, axis=1) <= 0)
    assert np.all((items == -1) == np.isneginf(scores))
    assert np.all((items >= -1) & (items < X.shape[1]))
    for row in items:  # padding only at the tail, no duplicates
        valid = row[row >= 0]
        assert (row[: len(valid)] == valid).all() and len(set(valid)) == len(valid)


def test_seen_items_are_excluded_by_default(fitted):
    items, _ = fitted.recommend(X, 10)
    for u in range(X.shape[0]):
        assert not set(items[u][items[u] >= 0]) & set(X[u].indices)


def test_explicit_exclude_and_empty_exclude(fitted):
    rows = X[:4]
    ex = sp.csr_matrix(np.eye(4, X.shape[1], dtype=np.float32))  # exclude item u for row u
    items, _ = fitted.recommend(rows, X.shape[1], exclude=ex)
    for u in range(4):
        assert u not in items[u]
    nothing = sp.csr_matrix(rows.shape, dtype=np.float32)
    items, _ = fitted.recommend(rows, X.shape[1], exclude=nothing)
    seen_back = [set(rows[u].indices) & set(items[u]) for u in range(4)]
    if fitted.kind != "itemknn":  # itemknn only returns items with evidence, all others rank everything
        assert all(seen_back) and (items >= 0).all()


def test_k_larger_than_catalogue_pads(fitted):
    items, scores = fitted.recommend(X[:3], X.shape[1] + 5)
    assert items.shape == (3, X.shape[1] + 5)
    assert (items[:, -5:] == -1).all() and np.isneginf(scores[:, -5:]).all()
    assert ((items >= 0).sum(axis=1) <= X.shape[1] - np.diff(X[:3].indptr)).all()


def test_fold_in_of_unseen_users_and_empty_batches(fitted):
    new = sp.csr_matrix(np.isin(np.arange(X.shape[1]), [0, 1, 2, 3]).astype(np.float32)[None, :])
    items, _ = fitted.recommend(new, 5)
    assert items.shape == (1, 5) and not set(items[0]) & {0, 1, 2, 3}
    items, scores = fitted.recommend(sp.csr_matrix((0, X.shape[1]), dtype=np.float32), 5)
    assert items.shape == scores.shape == (0, 5)


def test_personalised_models_learn_the_clusters(fitted):
    if fitted.kind == "pop":
        pytest.skip("popularity is not personalised")
    items, _ = fitted.recommend(X, 5)
    half = X.shape[1] // 2
    cluster = (np.arange(X.shape[0]) % 2)[:, None]
    same = ((items >= 0) & ((items >= half) == cluster.astype(bool))).sum()
    assert same / (items >= 0).sum() > 0.8


def test_blocked_scoring_gives_the_same_lists(fitted, monkeypatch):
    whole = fitted.recommend(X, 6)
    monkeypatch.setattr(base, "SCORE_BLOCK_FLOATS", 3 * X.shape[1])  # 3 users per block
    blocked = fitted.recommend(X, 6)
    np.testing.assert_allclose(whole[1], blocked[1], rtol=1e-5)
    tie_free = np.isclose(whole[1][:, :-1], whole[1][:, 1:]).sum() == 0
    if tie_free:
        np.testing.assert_array_equal(whole[0], blocked[0])


def test_wrong_item_count_is_rejected(fitted):
    with pytest.raises(ValidationError):
        fitted.recommend(sp.csr_matrix((2, X.shape[1] + 1), dtype=np.float32), 3)
    with pytest.raises(ValidationError):
        fitted.recommend(X[:2], 3, exclude=X[:3])
    with pytest.raises(ValidationError):
        fitted.recommend(X[:2], 0)


def test_similar_items(fitted):
    items = np.array([0, 5, 25])
    sim, scores = fitted.similar_items(items, 4)
    assert sim.shape == scores.shape == (3, 4) and sim.dtype == np.int32
    for row, item in zip(sim, items, strict=True):
        assert item not in row
    assert np.all(np.diff(scores, axis=1) <= 0)
    with pytest.raises(ValidationError):
        fitted.similar_items(np.array([X.shape[1]]), 3)
    empty = fitted.similar_items(np.array([], dtype=np.int64), 3)
    assert empty[0].shape == (0, 3)


def test_save_load_round_trip(fitted, tmp_path):
    fitted.save(tmp_path / "m")
    assert (tmp_path / "m" / "manifest.json").exists()
    again = load_model(tmp_path / "m")
    assert type(again) is type(fitted) and again.get_params() == fitted.get_params()
    a, b = fitted.recommend(X[:20], 5), again.recommend(X[:20], 5)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-5)
    np.testing.assert_allclose(
        fitted.similar_items(np.arange(5), 3)[1], again.similar_items(np.arange(5), 3)[1], rtol=1e-5
    )
    assert type(fitted).load(tmp_path / "m").is_fitted


def test_load_checks_the_kind(fitted, tmp_path):
    fitted.save(tmp_path / "m")
    other = next(cls for n, cls in MODELS.items() if n != fitted.kind)
    with pytest.raises(CorruptDataError):
        other.load(tmp_path / "m")


def test_fitting_is_deterministic_and_warning_free(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = make_model(name, **SMALL[name]).fit(X).recommend(X[:10], 5)
        b = make_model(name, **SMALL[name]).fit(X).recommend(X[:10], 5)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-5)
