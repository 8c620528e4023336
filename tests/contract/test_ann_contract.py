"""The contract every ANN index honours (one suite, run for each kind in ``INDEX_KINDS``)."""

import numpy as np
import pytest

from funnel.ann.factory import INDEX_KINDS, load_index, make_index, omp_threads, set_omp_threads
from funnel.ann.protocol import AnnIndex
from funnel.core.errors import ValidationError

DIM = 16
N = 400
# small, fast settings under which every kind is close to exhaustive on N items
SMALL = {
    "exact": {},
    "hnsw": {"M": 16, "ef_construction": 100, "ef_search": 128},
    "ivf_sq8": {"nlist": 8, "nprobe": 8},
    "ivf_pq": {"nlist": 4, "nprobe": 4, "m": 16, "nbits": 8},
    "ivf_pq_fs": {"nlist": 4, "nprobe": 4, "refine_factor": 8},
}


def clustered(n=N, dim=DIM, clusters=8, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    x = centres[rng.integers(0, clusters, n)] + 0.5 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


X = clustered()
IDS = np.arange(N, dtype=np.int64) * 3 + 7  # ids are not row numbers
Q = clustered(20, seed=1)


def brute(ids, vecs, queries, k):
    scores = queries @ vecs.T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return ids[top], np.take_along_axis(scores, top, axis=1)


def recall(found, truth):
    return np.mean([len(set(f[f >= 0]) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)])


@pytest.fixture(autouse=True, scope="module")
def one_faiss_thread():
    """Tiny indexes: OpenMP threads only add spin-waiting on a busy machine."""
    before = omp_threads()
    set_omp_threads(1)
    yield
    set_omp_threads(before)


@pytest.fixture(params=sorted(INDEX_KINDS))
def kind(request) -> str:
    return request.param


@pytest.fixture
def index(kind):
    idx = make_index(kind, DIM, **SMALL[kind])
    idx.add(IDS, X)
    return idx


def test_is_an_ann_index(index, kind):
    assert isinstance(index, AnnIndex)
    assert index.dim == DIM and len(index) == N
    assert index.is_exact == (kind == "exact")
    assert index.memory_bytes() > 0


def test_empty_index_returns_padding(kind):
    idx = make_index(kind, DIM, **SMALL[kind])
    ids, scores = idx.search(Q[:3], k=5)
    assert len(idx) == 0 and ids.shape == (3, 5) and ids.dtype == np.int64
    assert (ids == -1).all() and np.isneginf(scores).all() and scores.dtype == np.float32


def test_top_k_matches_brute_force(index, kind):
    ids, scores = index.search(Q, k=10)
    t_ids, t_scores = brute(IDS, X, Q, 10)
    assert ids.shape == scores.shape == (len(Q), 10)
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first
    if kind == "exact":
        np.testing.assert_array_equal(ids, t_ids)
        np.testing.assert_allclose(scores, t_scores, rtol=1e-5, atol=1e-6)
    else:
        assert recall(ids, t_ids) >= 0.9


def test_removed_ids_never_come_back(index, tmp_path):
    gone = IDS[::3]
    index.remove(gone)
    index.remove(np.array([1, 2, 10**9]))  # unknown ids are ignored
    assert len(index) == N - len(gone)
    ids, _ = index.search(np.vstack([Q, X[::3]]), k=N)  # ask for everything, incl. the removed vectors
    assert not np.isin(ids, gone).any()
    index.save(tmp_path / "ix")
    again = load_index(tmp_path / "ix")
    assert type(again) is type(index) and len(again) == N - len(gone)
    ids, _ = again.search(X[::3], k=N)
    assert not np.isin(ids, gone).any()
    again.add(IDS[:1], X[:1])  # the loaded index keeps working
    assert len(again) == N - len(gone) + 1


def test_remove_everything_leaves_an_empty_index(index):
    index.remove(IDS)
    ids, scores = index.search(Q[:2], k=3)
    assert len(index) == 0 and (ids == -1).all() and np.isneginf(scores).all()


def test_re_add_replaces_the_vector(index):
    target, far = IDS[5], int(np.argmin(X @ X[5]))  # move item 5 onto the item farthest from it
    new = X[far : far + 1]
    index.add(np.array([target]), new)
    assert len(index) == N
    ids, scores = index.search(new, k=2)
    assert set(ids[0]) == {target, IDS[far]} and scores[0, 1] == pytest.approx(1.0, abs=0.05)
    ids, _ = index.search(X[5:6], k=N)
    assert (ids == target).sum() <= 1  # never twice
    assert target not in ids[0, :20]  # the old vector is gone


def test_repeated_id_in_one_add_keeps_the_last(kind):
    idx = make_index(kind, DIM, **SMALL[kind])
    idx.add(IDS, X)
    idx.add(np.array([IDS[0], IDS[0]]), np.vstack([X[1], -X[0]]))
    assert len(idx) == N
    assert idx.search(-X[:1], k=1)[0][0, 0] == IDS[0]


def test_exclude_is_never_returned(index):
    top, _ = index.search(Q[:2], k=10)
    exclude = [top[0, :5], np.array([], dtype=np.int64)]
    ids, scores = index.search(Q[:2], k=10, exclude=exclude)
    assert not np.isin(ids[0], top[0, :5]).any()
    assert (ids >= 0).all() and np.isfinite(scores).all()  # still 10 results each
    np.testing.assert_array_equal(ids[1], top[1])
    assert len(set(ids[0]) & set(top[0, 5:])) >= 4


def test_pads_when_fewer_live_items_than_k(index):
    index.remove(IDS[10:])
    ids, scores = index.search(Q[:2], k=15)
    assert ids.shape == (2, 15)
    assert set(ids[0, :10]) == set(IDS[:10]) and (ids[:, 10:] == -1).all()
    assert np.isneginf(scores[:, 10:]).all() and np.isfinite(scores[:, :10]).all()


def test_dimension_mismatch_is_a_validation_error(index):
    with pytest.raises(ValidationError, match="vectors"):
        index.add(np.array([1]), np.ones((1, DIM + 1), dtype=np.float32))
    with pytest.raises(ValidationError, match="queries"):
        index.search(np.ones((1, DIM - 1), dtype=np.float32), k=3)
    with pytest.raises(ValidationError, match="ids"):
        index.add(np.array([1, 2]), np.ones((1, DIM), dtype=np.float32))


def test_save_load_gives_the_same_answers(index, tmp_path):
    before = index.search(Q, k=10)
    index.save(tmp_path / "ix")
    again = load_index(tmp_path / "ix")
    after = again.search(Q, k=10)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_allclose(before[1], after[1], rtol=1e-6)
