"""``IvfPqFastScanIndex``: IVF with 4-bit fast-scan PQ codes, re-scored exactly on float32 vectors.

FAISS's fast-scan PQ (``IndexIVFPQFastScan``) packs 4-bit codes in blocks that SIMD lookups
score many at a time, so visiting twice the inverted lists of :class:`~funnel.ann.faiss_ivf.
IvfSq8Index` still costs less; its coarse scores then only pick ``refine_factor x k``
candidates, which are re-scored with their exact float32 vectors (kept here, keyed by id) and cut
to ``k``. FAISS's own ``IndexRefineFlat`` cannot take our ids (``add_with_ids``) nor delete
(``remove_ids``), so the refinement store lives on this side: a float32 row per live id; a
removed or replaced id's row is reused by later adds and the rows are compacted when more than
half are free.

On the 1M-item benchmark world's ALS factors (``python -m benchmarks.bench_als_index``: 351,526
indexed items, 65 dims, 1024 lists, k = 491, one query a call on one thread): ``nprobe=256,
refine_factor=4`` finds 89.3% of the exact top k in 1.55 ms a query, against 85.0% in 2.5 ms for
IVF-SQ8 at ``nprobe=128`` (the ALS source's previous default). Memory: the codes (``m / 2`` bytes), the
8-byte id and the float32 row (``4 * dim`` bytes) per vector.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> index = IvfPqFastScanIndex(dim=4, nlist=2, nprobe=2)
    >>> index.add(np.arange(50), rng.normal(size=(50, 4)))
    >>> index.remove(np.arange(10))
    >>> ids, scores = index.search(rng.normal(size=(3, 4)), k=5)
    >>> len(index), bool((ids >= 10).all()), bool((np.diff(scores, axis=1) <= 0).all())
    (40, True, True)
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from funnel.ann.exact import check_add, check_ids, check_vectors
from funnel.ann.faiss_index import grow
from funnel.ann.faiss_ivf import IvfIndex
from funnel.core.errors import CorruptDataError, ValidationError


class IvfPqFastScanIndex(IvfIndex):
    """IVF + 4-bit fast-scan PQ (``m`` sub-quantisers, default one per dimension) + exact refine.

    ``refine_factor``: how many coarse candidates per wanted result are re-scored exactly.
    """

    kind = "ivf_pq_fs"

    def __init__(
        self,
        dim: int,
        nlist: int = 1024,
        nprobe: int = 256,
        max_train: int = 100_000,
        m: int | None = None,
        refine_factor: int = 4,
    ) -> None:
        super().__init__(dim, nlist=nlist, nprobe=nprobe, max_train=max_train)
        self.m = int(m) if m is not None else self.dim
        if self.m < 1 or self.dim % self.m:
            raise ValidationError(f"m={self.m} must divide dim={self.dim}", field="m")
        if refine_factor < 1:
            raise ValidationError("must be >= 1", field="refine_factor")
        self.refine_factor = int(refine_factor)
        self._vectors = np.zeros((0, self.dim), np.float32)  # the exact vector of each row
        self._row_ids = np.zeros(0, np.int64)  # id of each row, -1 when free
        self._row_of = np.zeros(0, np.int64)  # row of each id, -1 when absent
        self._free: list[int] = []
        self._used = 0  # rows ever handed out (live + free)

    def train(self, vectors: np.ndarray, seed: int = 0) -> None:
        """As :meth:`IvfIndex.train`; under 16 vectors (a 4-bit codebook) they are repeated, jittered."""
        vectors = check_vectors(vectors, self.dim)
        if 0 < len(vectors) < 16:
            rng = np.random.default_rng(seed)
            tiled = np.resize(vectors, (16, self.dim))
            vectors = tiled + 1e-4 * rng.standard_normal(tiled.shape).astype(np.float32)
        super().train(vectors, seed)

    def _make(self, n_train: int) -> Any:
        nlist = max(1, min(self.nlist, n_train))
        quantizer = faiss.IndexFlatIP(self.dim)
        index = faiss.IndexIVFPQFastScan(quantizer, self.dim, nlist, self.m, 4, faiss.METRIC_INNER_PRODUCT)
        index.pq.cp.min_points_per_centroid = 1  # small samples are allowed; no warning spam
        return index

    def __len__(self) -> int:
        return self._used - len(self._free)

    def _rows(self, ids: np.ndarray) -> np.ndarray:
        """Row of each id (-1 when absent)."""
        rows = np.full(ids.shape, -1, np.int64)
        ok = ids < len(self._row_of)
        rows[ok] = self._row_of[ids[ok]]
        return rows

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Insert or replace the vectors of ``ids`` (training first if needed)."""
        ids, vectors = check_add(ids, vectors, self.dim)
        if len(ids) == 0:
            return
        super().add(ids, vectors)
        rows = self._rows(ids)
        new = np.flatnonzero(rows < 0)
        reuse = min(len(new), len(self._free))
        if reuse:
            rows[new[:reuse]] = [self._free.pop() for _ in range(reuse)]
        fresh = len(new) - reuse
        if fresh:
            rows[new[reuse:]] = np.arange(self._used, self._used + fresh)
            self._used += fresh
            self._vectors = grow(self._vectors, self._used, 0.0)
            self._row_ids = grow(self._row_ids, self._used, -1)
        self._row_of = grow(self._row_of, int(ids.max()) + 1, -1)
        self._vectors[rows] = vectors
        self._row_ids[rows] = ids
        self._row_of[ids] = rows

    def remove(self, ids: np.ndarray) -> None:
        """Delete ``ids`` (effective at once; unknown ids ignored); their rows are reused later."""
        ids = check_ids(ids)
        super().remove(ids)
        rows = self._rows(ids)
        hit = rows >= 0
        if not hit.any():
            return
        gone = np.unique(rows[hit])
        self._row_ids[gone] = -1
        self._row_of[ids[hit]] = -1
        self._free.extend(gone.tolist())
        if len(self._free) > len(self):
            self._compact()

    def _live_rows(self) -> np.ndarray:
        """The rows holding a live id, in row order."""
        return np.flatnonzero(self._row_ids[: self._used] >= 0)

    def _compact(self) -> None:
        """Move the live rows to the front (a fresh array) and forget the free ones."""
        live = self._live_rows()
        self._vectors = self._vectors[live].copy()
        self._row_ids = self._row_ids[live].copy()
        self._row_of[self._row_ids] = np.arange(len(live))
        self._free, self._used = [], len(live)

    def _raw_search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        coarse, _ = super()._raw_search(queries, min(k * self.refine_factor, len(self)))
        rows = self._rows(np.maximum(coarse, 0))
        rows[coarse < 0] = -1
        safe = np.maximum(rows, 0)
        exact = np.einsum("qcd,qd->qc", self._vectors[safe], queries, optimize=False)
        exact = np.where(rows >= 0, exact, -np.inf).astype(np.float32)
        if exact.shape[1] > k:
            top = np.argpartition(-exact, k - 1, axis=1)[:, :k]
            coarse, exact = np.take_along_axis(coarse, top, 1), np.take_along_axis(exact, top, 1)
        return np.where(np.isfinite(exact), coarse, -1), exact

    def code_bytes(self) -> int:
        """Bytes per stored vector: its 4-bit codes, its 8-byte id and its float32 row."""
        return (self.m + 1) // 2 + 8 + 4 * self.dim

    def memory_bytes(self) -> int:
        """The IVF total (per vector: :meth:`code_bytes`) + the id/row maps + the spare refine rows."""
        if self._index is None:
            return 0
        spare = 4 * self.dim * (len(self._vectors) - len(self))
        return super().memory_bytes() + self._row_ids.nbytes + self._row_of.nbytes + spare

    def _table_bytes(self) -> int:
        return self.m * 16 * (self.dim // self.m) * 4  # 16 centroids per sub-quantiser

    def _params(self) -> dict[str, Any]:
        return {**super()._params(), "m": self.m, "refine_factor": self.refine_factor}

    def _state_arrays(self) -> dict[str, np.ndarray]:
        live = self._live_rows()
        return {"refine_ids": self._row_ids[live], "refine_vectors": self._vectors[live]}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        ids = np.asarray(arrays["refine_ids"], np.int64)
        vectors = np.asarray(arrays["refine_vectors"], np.float32)
        held = 0 if self._index is None else int(self._index.ntotal)
        if len(ids) != held or vectors.shape != (len(ids), self.dim):
            raise CorruptDataError(f"the index holds {held} vectors, the refine rows {vectors.shape}")
        self._vectors, self._row_ids = np.ascontiguousarray(vectors), ids
        self._row_of = np.full(int(ids.max()) + 1 if len(ids) else 0, -1, np.int64)
        self._row_of[ids] = np.arange(len(ids))
        self._free, self._used = [], len(ids)
