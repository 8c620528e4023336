"""FAISS indexes behind the ``AnnIndex`` protocol: the shared base and ``HnswIndex``.

``HnswIndex`` wraps ``IndexHNSWFlat`` (inner product). HNSW cannot delete, so ``remove`` and
re-``add`` leave *tombstones*: the slot is marked dead, a bitmap ``IDSelector`` keeps dead slots
out of every search (and results are filtered once more against the live mask), and when dead
slots exceed ``rebuild_fraction`` of all slots the graph is rebuilt from the live vectors, which
reclaims their memory. The IVF indexes live in :mod:`funnel.ann.faiss_ivf`.

FAISS uses OpenMP threads for building and for batched search; :func:`set_omp_threads` sets them.

Example:
    >>> import numpy as np
    >>> index = HnswIndex(dim=2, M=8)
    >>> index.add(np.array([5, 6, 7]), np.array([[1, 0], [0, 1], [0.5, 0.5]], dtype=np.float32))
    >>> index.remove(np.array([5]))
    >>> index.search(np.array([[1.0, 0.0]]), k=3)[0].tolist()
    [[7, 6, -1]]
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Self

import faiss
import numpy as np

from funnel.ann.exact import check_add, check_ids, check_search, empty_result
from funnel.core.artifacts import load_artifact, save_artifact
from funnel.core.errors import CorruptDataError, ValidationError

FORMAT_VERSION = 1
INDEX_FILE = "index.faiss"


def set_omp_threads(n: int) -> None:
    """Set the number of OpenMP threads FAISS uses (build and batched search), process-wide."""
    faiss.omp_set_num_threads(max(1, int(n)))


def omp_threads() -> int:
    """The number of OpenMP threads FAISS currently uses."""
    return int(faiss.omp_get_max_threads())


def grow(arr: np.ndarray, n: int, fill: Any) -> np.ndarray:
    """Return ``arr`` with room for at least ``n`` entries (rows; new ones are ``fill``), amortised."""
    if n <= len(arr):
        return arr
    out = np.full((max(n, int(len(arr) * 1.5) + 16), *arr.shape[1:]), fill, dtype=arr.dtype)
    out[: len(arr)] = arr
    return out


class FaissIndexBase:
    """What every FAISS-backed index shares: input checks, exclude filtering, padding, save/load.

    Subclasses implement ``_raw_search(queries, k) -> (ids, scores)`` (ids ``-1`` for no result),
    ``_params()``, ``_state_arrays()`` / ``_restore(arrays)`` and ``memory_bytes()``.
    """

    is_exact = False
    kind = "faiss"

    def __init__(self, dim: int) -> None:
        if dim < 1:
            raise ValidationError(f"must be >= 1, got {dim}", field="dim")
        self.dim = int(dim)
        self._index: Any = None

    def _raw_search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _params(self) -> dict[str, Any]:
        raise NotImplementedError

    def _state_arrays(self) -> dict[str, np.ndarray]:
        return {}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        """Rebuild Python-side state after ``load`` (``self._index`` is already read)."""

    def _slots(self) -> int:
        """Entries FAISS holds (live, plus tombstones for indexes that keep them)."""
        return 0 if self._index is None else int(self._index.ntotal)

    def __len__(self) -> int:
        return self._slots()

    def memory_bytes(self) -> int:
        """Bytes held by the index (FAISS structures plus the Python-side arrays)."""
        raise NotImplementedError

    def search(
        self, queries: np.ndarray, k: int, exclude: list[np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ids and inner products per query, best first, padded with -1/-inf.

        ``k`` is oversampled by the longest ``exclude`` array so that excluded ids filtered out
        afterwards do not leave holes.
        """
        queries, exclude = check_search(queries, k, exclude, self.dim)
        nq = len(queries)
        if nq == 0 or len(self) == 0:
            return empty_result(nq, k)
        extra = max((len(e) for e in exclude), default=0) if exclude is not None else 0
        ks = max(1, min(k + extra, self._slots()))
        ids, scores = self._raw_search(queries, ks)
        ids = ids.astype(np.int64, copy=False)
        scores = np.where(ids >= 0, scores, -np.inf).astype(np.float32)
        if exclude is not None:
            for j, ex in enumerate(exclude):
                if len(ex):
                    hit = np.isin(ids[j], ex)
                    ids[j, hit], scores[j, hit] = -1, -np.inf
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        ids = np.take_along_axis(ids, order, axis=1)
        scores = np.take_along_axis(scores, order, axis=1)
        if ks < k:
            pad_ids, pad_scores = empty_result(nq, k - ks)
            ids, scores = np.hstack([ids, pad_ids]), np.hstack([scores, pad_scores])
        return ids, scores

    def save(self, folder: str | Path) -> None:
        """Write ``index.faiss`` (``faiss.write_index``), state arrays and a versioned manifest."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        has_index = self._index is not None
        if has_index:
            tmp = folder / (INDEX_FILE + ".tmp")
            faiss.write_index(self._index, str(tmp))
            os.replace(tmp, folder / INDEX_FILE)
        meta = {"has_index": has_index, "faiss_version": faiss.__version__, "len": len(self)}
        save_artifact(folder, f"ann.{self.kind}", FORMAT_VERSION, self._params(), self._state_arrays(), meta)

    @classmethod
    def load(cls, folder: str | Path) -> Self:
        """Read an index written by :meth:`save`."""
        art = load_artifact(folder, f"ann.{cls.kind}", FORMAT_VERSION)
        index = cls(**art.params)
        if art.meta.get("has_index"):
            index._index = faiss.read_index(str(Path(folder) / INDEX_FILE))
        index._restore(art.arrays)
        return index


class HnswIndex(FaissIndexBase):
    """``IndexHNSWFlat`` with inner product; removals are tombstones, rebuilt away past a fraction.

    ``M`` (graph degree) and ``ef_construction`` set build cost and graph quality; ``ef_search``
    (raised to ``k`` when smaller) is the recall/latency lever at query time.
    """

    kind = "hnsw"

    def __init__(
        self,
        dim: int,
        M: int = 32,
        ef_construction: int = 80,
        ef_search: int = 256,
        rebuild_fraction: float = 0.25,
    ) -> None:
        super().__init__(dim)
        if not 0.0 < rebuild_fraction <= 1.0:
            raise ValidationError("must be in (0, 1]", field="rebuild_fraction")
        self.M, self.ef_construction = int(M), int(ef_construction)
        self.ef_search, self.rebuild_fraction = int(ef_search), float(rebuild_fraction)
        self.rebuilds = 0
        self._index = self._new_index()
        self._slot_ids = np.zeros(0, dtype=np.int64)  # our id of each FAISS slot
        self._live = np.zeros(0, dtype=bool)  # False for tombstones
        self._slot_of = np.zeros(0, dtype=np.int32)  # slot of each id, -1 when absent
        self._n_live = 0
        self._bits: np.ndarray | None = None  # packed live bitmap for the IDSelector (lazy)

    def _new_index(self) -> Any:
        index = faiss.IndexHNSWFlat(self.dim, self.M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.ef_construction
        index.hnsw.efSearch = self.ef_search
        return index

    def __len__(self) -> int:
        return self._n_live

    @property
    def tombstones(self) -> int:
        """Dead slots still in the graph (removed or replaced vectors)."""
        return self._slots() - self._n_live

    def _lookup(self, ids: np.ndarray) -> np.ndarray:
        slots = np.full(len(ids), -1, dtype=np.int64)
        ok = ids < len(self._slot_of)
        slots[ok] = self._slot_of[ids[ok]]
        return slots

    def _kill(self, ids: np.ndarray) -> None:
        slots = self._lookup(ids)
        slots = slots[slots >= 0]
        if len(slots):
            self._live[slots] = False
            self._slot_of[self._slot_ids[slots]] = -1
            self._n_live -= len(slots)
            self._bits = None

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Insert or replace (old slot tombstoned) the vectors of ``ids``."""
        ids, vectors = check_add(ids, vectors, self.dim)
        if len(ids) == 0:
            return
        self._kill(ids)
        start = self._slots()
        self._index.add(vectors)
        stop = start + len(ids)
        self._slot_ids = grow(self._slot_ids, stop, -1)
        self._live = grow(self._live, stop, False)
        self._slot_of = grow(self._slot_of, int(ids.max()) + 1, -1)
        self._slot_ids[start:stop] = ids
        self._live[start:stop] = True
        self._slot_of[ids] = np.arange(start, stop, dtype=np.int32)
        self._n_live += len(ids)
        self._bits = None
        self._maybe_rebuild()

    def remove(self, ids: np.ndarray) -> None:
        """Tombstone ``ids`` (effective at once; unknown ids ignored); rebuild past the fraction."""
        self._kill(check_ids(ids))
        self._maybe_rebuild()

    def _maybe_rebuild(self) -> None:
        if self.tombstones > self.rebuild_fraction * self._slots():
            self.rebuild()

    def rebuild(self) -> None:
        """Build a fresh graph from the live vectors only, dropping every tombstone."""
        n = self._slots()
        live = np.flatnonzero(self._live[:n])
        vectors = self._index.reconstruct_n(0, n)[live] if n else np.zeros((0, self.dim), np.float32)
        ids = self._slot_ids[live]
        self._index = self._new_index()
        self._slot_ids = np.zeros(0, dtype=np.int64)
        self._live = np.zeros(0, dtype=bool)
        self._slot_of = np.full(int(ids.max()) + 1 if len(ids) else 0, -1, dtype=np.int32)
        self._n_live, self._bits = 0, None
        self.rebuilds += 1
        if len(ids):
            self.add(ids, vectors)

    def _raw_search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        params = faiss.SearchParametersHNSW()
        params.efSearch = max(self.ef_search, k)
        n = self._slots()
        if self.tombstones:
            if self._bits is None:
                self._bits = np.packbits(self._live[:n], bitorder="little")
            params.sel = faiss.IDSelectorBitmap(n, faiss.swig_ptr(self._bits))
        scores, slots = self._index.search(queries, k, params=params)
        ok = slots >= 0
        ok[ok] = self._live[slots[ok]]  # belt and braces: a tombstone never leaves the index
        return np.where(ok, self._slot_ids[np.where(ok, slots, 0)], -1), scores

    def memory_bytes(self) -> int:
        """Vectors + graph links + levels/offsets + the id arrays (tombstones included)."""
        hnsw = self._index.hnsw
        faiss_bytes = (
            self._slots() * self.dim * 4
            + hnsw.neighbors.size() * 4
            + hnsw.levels.size() * 4
            + hnsw.offsets.size() * 8
        )
        ours = self._slot_ids.nbytes + self._live.nbytes + self._slot_of.nbytes
        return int(faiss_bytes + ours + (0 if self._bits is None else self._bits.nbytes))

    def _params(self) -> dict[str, Any]:
        return {
            "dim": self.dim,
            "M": self.M,
            "ef_construction": self.ef_construction,
            "ef_search": self.ef_search,
            "rebuild_fraction": self.rebuild_fraction,
        }

    def _state_arrays(self) -> dict[str, np.ndarray]:
        n = self._slots()
        return {"slot_ids": self._slot_ids[:n], "live": self._live[:n]}

    def _restore(self, arrays: dict[str, np.ndarray]) -> None:
        self._slot_ids = arrays["slot_ids"].astype(np.int64)
        self._live = arrays["live"].astype(bool)
        if len(self._live) != self._slots():
            raise CorruptDataError(
                f"{INDEX_FILE}: {self._slots()} slots, state arrays hold {len(self._live)}"
            )
        live_ids = self._slot_ids[self._live]
        self._slot_of = np.full(int(live_ids.max()) + 1 if len(live_ids) else 0, -1, dtype=np.int32)
        self._slot_of[live_ids] = np.flatnonzero(self._live).astype(np.int32)
        self._n_live = len(live_ids)
