"""Per-implementation details of the ANN indexes (the shared behaviour is in the contract suite)."""

import json

import numpy as np
import pytest

from funnel.ann.exact import ExactIndex, check_ids
from funnel.ann.factory import load_index, make_index, omp_threads, set_omp_threads
from funnel.ann.faiss_index import HnswIndex
from funnel.ann.faiss_ivf import IvfPqIndex, IvfSq8Index
from funnel.core.artifacts import save_artifact
from funnel.core.errors import ConfigError, CorruptDataError, ValidationError


@pytest.fixture(autouse=True, scope="module")
def one_faiss_thread():
    """Tiny indexes: OpenMP threads only add spin-waiting on a busy machine."""
    before = omp_threads()
    set_omp_threads(1)
    yield
    set_omp_threads(before)


def unit_rows(n, dim, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_exact_blocks_give_the_same_answer_as_one_block():
    x, q = unit_rows(500, 8), unit_rows(7, 8, seed=1)
    big, tiny = ExactIndex(8), ExactIndex(8, block_bytes=4 * 7 * 13)  # 13 rows a block
    for idx in (big, tiny):
        idx.add(np.arange(500), x)
    exclude = [np.arange(0, 500, 2)] * 7
    for ex in (None, exclude):
        a, b = big.search(q, 20, exclude=ex), tiny.search(q, 20, exclude=ex)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_allclose(a[1], b[1], rtol=1e-6)
    assert (tiny.search(q, 20, exclude=exclude)[0] % 2 == 1).all()


def test_exact_memory_follows_the_live_catalogue():
    idx = ExactIndex(16)
    idx.add(np.arange(10_000), unit_rows(10_000, 16))
    full = idx.memory_bytes()
    idx.remove(np.arange(500, 10_000))
    assert len(idx) == 500 and idx.memory_bytes() < full / 10
    ids, vecs = idx.vectors()
    assert set(ids) == set(range(500)) and vecs.shape == (500, 16)


def test_hnsw_tombstones_then_rebuild_reclaims_memory():
    x = unit_rows(1000, 8)
    idx = HnswIndex(8, M=8, ef_search=64, rebuild_fraction=0.5)
    idx.add(np.arange(1000), x)
    full = idx.memory_bytes()
    idx.remove(np.arange(400))  # 40% dead: below the fraction, kept as tombstones
    assert idx.tombstones == 400 and idx.rebuilds == 0 and len(idx) == 600
    assert not np.isin(idx.search(x[:400], 50)[0], np.arange(400)).any()
    idx.remove(np.arange(400, 600))  # 60% dead: rebuilt from the live vectors
    assert idx.tombstones == 0 and idx.rebuilds == 1 and len(idx) == 400
    assert idx.memory_bytes() < 0.6 * full
    found = idx.search(x[600:], 1)[0][:, 0]
    assert (found == np.arange(600, 1000)).mean() > 0.95  # vectors survived the rebuild


def test_hnsw_re_add_tombstones_the_old_slot():
    idx = HnswIndex(4, M=8)
    idx.add(np.arange(10), unit_rows(10, 4))
    idx.add(np.array([3]), unit_rows(1, 4, seed=9))
    assert len(idx) == 10 and idx.tombstones == 1


def test_hnsw_explicit_rebuild_keeps_answers(tmp_path):
    x, q = unit_rows(300, 8), unit_rows(5, 8, seed=1)
    idx = HnswIndex(8, M=16, ef_search=300)
    idx.add(np.arange(300) + 1000, x)
    idx.remove(np.arange(1000, 1030))
    before = idx.search(q, 10)[0]
    idx.rebuild()
    after = idx.search(q, 10)[0]
    np.testing.assert_array_equal(before, after)
    idx.save(tmp_path / "h")
    np.testing.assert_array_equal(load_index(tmp_path / "h").search(q, 10)[0], after)


def test_ivf_trains_on_first_add_and_caps_nlist(tmp_path):
    idx = IvfSq8Index(8, nlist=1024, nprobe=4)
    assert not idx.is_trained and idx.memory_bytes() == 0
    idx.add(np.arange(100), unit_rows(100, 8))
    assert idx.is_trained and idx._index.nlist == 100 and len(idx) == 100
    idx.save(tmp_path / "ivf")
    manifest = json.loads((tmp_path / "ivf" / "manifest.json").read_text())
    assert manifest["kind"] == "ann.ivf_sq8" and manifest["format_version"] == 1
    assert manifest["params"]["nlist"] == 100
    with pytest.raises(ValidationError):
        idx.train(unit_rows(100, 8))  # already holds vectors


def test_untrained_ivf_saves_and_loads_empty(tmp_path):
    IvfPqIndex(8, m=4).save(tmp_path / "pq")
    again = load_index(tmp_path / "pq")
    assert isinstance(again, IvfPqIndex) and len(again) == 0
    assert (again.search(unit_rows(2, 8), 3)[0] == -1).all()


def test_ivf_sq8_memory_is_a_quarter_of_float32_plus_ids():
    idx = IvfSq8Index(64, nlist=16)
    idx.add(np.arange(5000), unit_rows(5000, 64))
    ratio = idx.memory_bytes() / (5000 * 64 * 4)
    assert 0.28 <= ratio <= 0.30  # 64 code bytes + 8 id bytes of 256, plus centroids


def test_pq_parameters_are_checked():
    with pytest.raises(ValidationError, match="m"):
        IvfPqIndex(10, m=3)
    idx = IvfPqIndex(8, m=4, nbits=8)
    idx.add(np.arange(40), unit_rows(40, 8))  # too few vectors for 256 centroids: nbits lowered
    assert idx._index.pq.nbits == 5 and idx._params()["nbits"] == 5


def test_bad_input_is_a_validation_error():
    idx = ExactIndex(4)
    with pytest.raises(ValidationError, match="ids"):
        idx.add(np.array([-1]), np.ones((1, 4)))
    with pytest.raises(ValidationError, match="ids"):
        idx.add(np.array([0.5]), np.ones((1, 4)))
    with pytest.raises(ValidationError, match="finite"):
        idx.add(np.array([1]), np.full((1, 4), np.nan))
    with pytest.raises(ValidationError, match="k"):
        idx.search(np.ones((1, 4)), 0)
    with pytest.raises(ValidationError, match="exclude"):
        idx.search(np.ones((2, 4)), 1, exclude=[np.array([1])])
    assert check_ids(np.array([], dtype=np.float64)).dtype == np.int64


def test_factory_rejects_unknown_kinds_and_parameters(tmp_path):
    with pytest.raises(ConfigError, match="kind"):
        make_index("annoy", 8)
    with pytest.raises(ConfigError, match="ef_serch"):
        make_index("hnsw", 8, ef_serch=10)
    save_artifact(tmp_path / "other", "model.pop", 1, {}, {})
    with pytest.raises(CorruptDataError):
        load_index(tmp_path / "other")


def test_omp_threads_can_be_set():
    before = omp_threads()
    try:
        set_omp_threads(1)
        assert omp_threads() == 1
    finally:
        set_omp_threads(before)
