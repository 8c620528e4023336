"""IVF indexes (inner product): ``IvfSq8Index`` (8-bit scalar quantiser) and ``IvfPqIndex``.

Our int64 ids go straight into FAISS (``add_with_ids``) and IVF deletes for real
(``remove_ids``), so there are no tombstones: re-adding an id removes the old entry first, and
memory follows the live catalogue. The coarse quantiser (and the SQ/PQ codebooks) must be
trained: call :meth:`IvfIndex.train` on a sample, or the first ``add`` trains on its own vectors
(at most ``max_train`` of them). With fewer training vectors than ``nlist`` (or than ``2**nbits``
for PQ), those are lowered to fit; the effective values are kept in the manifest.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> index = IvfSq8Index(dim=4, nlist=2, nprobe=2)
    >>> index.add(np.arange(50), rng.normal(size=(50, 4)))
    >>> index.remove(np.arange(10))
    >>> ids, _ = index.search(rng.normal(size=(3, 4)), k=5)
    >>> len(index), bool((ids >= 10).all())
    (40, True)
"""

from __future__ import annotations

from typing import Any

import faiss
import numpy as np

from funnel.ann.exact import check_add, check_ids, check_vectors
from funnel.ann.faiss_index import FaissIndexBase
from funnel.core.errors import ValidationError


class IvfIndex(FaissIndexBase):
    """Inverted-file index over a flat inner-product coarse quantiser; subclasses pick the codes.

    ``nlist`` is the number of inverted lists (k-means cells), ``nprobe`` how many of them a
    query visits (the recall/latency lever).
    """

    kind = "ivf"

    def __init__(self, dim: int, nlist: int = 1024, nprobe: int = 32, max_train: int = 100_000) -> None:
        super().__init__(dim)
        if nlist < 1 or nprobe < 1:
            raise ValidationError("nlist and nprobe must be >= 1", field="nlist")
        self.nlist, self.nprobe, self.max_train = int(nlist), int(nprobe), int(max_train)

    def _make(self, n_train: int) -> Any:
        """A fresh untrained FAISS index sized for ``n_train`` training vectors."""
        raise NotImplementedError

    @property
    def is_trained(self) -> bool:
        """Whether the quantisers are trained (``add`` trains them on first use)."""
        return self._index is not None and bool(self._index.is_trained)

    def train(self, vectors: np.ndarray, seed: int = 0) -> None:
        """Train the coarse quantiser and the codes on ``vectors`` (a sample of at most ``max_train``)."""
        vectors = check_vectors(vectors, self.dim)
        if len(vectors) == 0:
            raise ValidationError("cannot train on zero vectors", field="vectors")
        if self.is_trained and self._index.ntotal:
            raise ValidationError("index already holds vectors; train before adding", field="vectors")
        if len(vectors) > self.max_train:
            pick = np.random.default_rng(seed).choice(len(vectors), self.max_train, replace=False)
            vectors = vectors[np.sort(pick)]
        index = self._make(len(vectors))
        index.cp.min_points_per_centroid = 1  # small samples are allowed; no warning spam
        index.train(vectors)
        self._index = index

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Insert or replace the vectors of ``ids`` (training first if needed)."""
        ids, vectors = check_add(ids, vectors, self.dim)
        if len(ids) == 0:
            return
        if not self.is_trained:
            self.train(vectors)
        if self._index.ntotal:
            self._index.remove_ids(faiss.IDSelectorBatch(ids))
        self._index.add_with_ids(vectors, ids)

    def remove(self, ids: np.ndarray) -> None:
        """Delete ``ids`` from the inverted lists (effective at once; unknown ids ignored)."""
        ids = check_ids(ids)
        if len(ids) and self._index is not None and self._index.ntotal:
            self._index.remove_ids(faiss.IDSelectorBatch(ids))

    def _raw_search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        params = faiss.SearchParametersIVF()
        params.nprobe = min(self.nprobe, self._index.nlist)
        scores, ids = self._index.search(queries, k, params=params)
        return ids, scores

    def code_bytes(self) -> int:
        """Bytes per stored vector: its code plus its 8-byte id."""
        return int(self._index.code_size) + 8 if self._index is not None else 0

    def memory_bytes(self) -> int:
        """Inverted lists (codes + ids) + coarse centroids + quantiser tables."""
        if self._index is None:
            return 0
        index = self._index
        lists = index.invlists
        n = sum(lists.list_size(i) for i in range(index.nlist))
        return int(n * self.code_bytes() + index.nlist * self.dim * 4 + self._table_bytes())

    def _table_bytes(self) -> int:
        return 0

    def _params(self) -> dict[str, Any]:
        params = {"dim": self.dim, "nlist": self.nlist, "nprobe": self.nprobe, "max_train": self.max_train}
        if self._index is not None:  # the effective list count after training
            params["nlist"] = int(self._index.nlist)
        return params


class IvfSq8Index(IvfIndex):
    """IVF with 8-bit scalar quantisation (``IndexIVFScalarQuantizer`` QT_8bit): ``dim`` bytes a vector."""

    kind = "ivf_sq8"

    def _make(self, n_train: int) -> Any:
        nlist = max(1, min(self.nlist, n_train))
        quantizer = faiss.IndexFlatIP(self.dim)
        return faiss.IndexIVFScalarQuantizer(
            quantizer, self.dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )

    def _table_bytes(self) -> int:
        return 2 * self.dim * 4  # per-dimension min and range


class IvfPqIndex(IvfIndex):
    """IVF with product quantisation (``IndexIVFPQ``): ``m`` sub-quantisers of ``nbits`` bits each.

    ``m`` must divide ``dim``; the default ``m = dim // 2`` stores two dimensions per byte.
    """

    kind = "ivf_pq"

    def __init__(
        self,
        dim: int,
        nlist: int = 1024,
        nprobe: int = 32,
        max_train: int = 100_000,
        m: int | None = None,
        nbits: int = 8,
    ) -> None:
        super().__init__(dim, nlist=nlist, nprobe=nprobe, max_train=max_train)
        self.m = int(m) if m is not None else max(1, self.dim // 2)
        if self.dim % self.m:
            raise ValidationError(f"m={self.m} must divide dim={self.dim}", field="m")
        if not 1 <= nbits <= 16:
            raise ValidationError("must be in [1, 16]", field="nbits")
        self.nbits = int(nbits)

    def _make(self, n_train: int) -> Any:
        nlist = max(1, min(self.nlist, n_train))
        nbits = max(1, min(self.nbits, int(np.log2(max(n_train, 2)))))
        quantizer = faiss.IndexFlatIP(self.dim)
        index = faiss.IndexIVFPQ(quantizer, self.dim, nlist, self.m, nbits, faiss.METRIC_INNER_PRODUCT)
        # k-means per sub-quantiser: a 64-points-a-centroid sample and 10 iterations keep training
        # in seconds (each of the ``m`` codebooks is trained on its own)
        index.pq.cp.min_points_per_centroid = 1
        index.pq.cp.max_points_per_centroid = 64
        index.pq.cp.niter = 10
        return index

    def _table_bytes(self) -> int:
        pq = self._index.pq
        return int(pq.M * pq.ksub * pq.dsub * 4)

    def _params(self) -> dict[str, Any]:
        params = super()._params()
        params["m"] = self.m
        params["nbits"] = int(self._index.pq.nbits) if self._index is not None else self.nbits
        return params
