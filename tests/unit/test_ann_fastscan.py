"""IVF fast-scan PQ with an exact refine: scores, row reuse, compaction, persistence."""

import numpy as np
import pytest

from funnel.ann.factory import load_index
from funnel.ann.faiss_fastscan import IvfPqFastScanIndex
from funnel.core.errors import CorruptDataError, ValidationError


def vectors(n: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def test_scores_are_the_exact_inner_products():
    x, q = vectors(200), vectors(3, seed=1)
    index = IvfPqFastScanIndex(8, nlist=4, nprobe=4, refine_factor=4)
    index.add(np.arange(200) + 1000, x)
    ids, scores = index.search(q, k=5)
    assert (ids >= 1000).all()
    np.testing.assert_allclose(scores, np.einsum("qkd,qd->qk", x[ids - 1000], q), rtol=1e-5)
    assert (np.diff(scores, axis=1) <= 0).all()


def test_removed_rows_are_reused_then_compacted():
    x = vectors(40)
    index = IvfPqFastScanIndex(8, nlist=2, nprobe=2)
    index.add(np.arange(40), x)
    index.remove(np.arange(10))
    assert len(index) == 30 and index._used == 40 and len(index._free) == 10
    index.add(np.array([100, 101]), x[:2])  # two freed rows taken again, no new ones
    assert index._used == 40 and len(index._free) == 8 and len(index) == 32
    ids, scores = index.search(x[:1], k=32)
    assert 0 not in ids[0] and 100 in ids[0]  # id 0 is gone; 100 holds its vector
    assert float(scores[0][ids[0] == 100][0]) == pytest.approx(float(x[0] @ x[0]), rel=1e-5)
    index.remove(np.arange(10, 40))  # more free rows than live ones: compacted
    assert len(index) == 2 and index._used == 2 and index._free == []
    assert sorted(index.search(x[:2], k=2)[0][0].tolist()) == [100, 101]


def test_re_add_rewrites_the_row_in_place():
    x = vectors(20)
    index = IvfPqFastScanIndex(8, nlist=2, nprobe=2)
    index.add(np.arange(20), x)
    index.add(np.array([3]), -x[3:4])
    assert index._used == 20 and len(index) == 20
    ids, scores = index.search(x[3:4], k=20)
    assert float(scores[0][ids[0] == 3][0]) == pytest.approx(-float(x[3] @ x[3]), rel=1e-5)


def test_save_load_keeps_only_live_rows(tmp_path):
    x = vectors(60)
    index = IvfPqFastScanIndex(8, nlist=4, nprobe=4)
    index.add(np.arange(60) * 2, x)
    index.remove(np.arange(0, 20, 2))
    index.save(tmp_path)
    again = load_index(tmp_path)
    assert isinstance(again, IvfPqFastScanIndex) and len(again) == 50 and again._used == 50
    q = vectors(4, seed=3)
    for a, b in zip(index.search(q, k=7), again.search(q, k=7), strict=True):
        np.testing.assert_array_equal(a, b)


def test_state_not_matching_the_faiss_index_is_corrupt(tmp_path):
    index = IvfPqFastScanIndex(8, nlist=2, nprobe=2)
    index.add(np.arange(30), vectors(30))
    index.save(tmp_path)
    arrays = dict(np.load(tmp_path / "arrays.npz"))
    short = {name: arrays[name][:-1] for name in ("refine_ids", "refine_vectors")}
    np.savez(tmp_path / "arrays.npz", **short)
    with pytest.raises(CorruptDataError):
        load_index(tmp_path)


def test_parameters_are_checked():
    with pytest.raises(ValidationError):
        IvfPqFastScanIndex(8, m=3)
    with pytest.raises(ValidationError):
        IvfPqFastScanIndex(8, refine_factor=0)
