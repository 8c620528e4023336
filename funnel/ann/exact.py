"""``ExactIndex``: brute-force inner-product search by blocked NumPy matmul (the recall reference).

Also holds the input checks every :class:`~funnel.ann.protocol.AnnIndex` implementation shares,
so that all of them reject the same bad input with the same :class:`ValidationError`.

Example:
    >>> import numpy as np
    >>> index = ExactIndex(dim=2)
    >>> index.add(np.array([10, 11, 12]), np.array([[1, 0], [0, 1], [0.5, 0.5]], dtype=np.float32))
    >>> ids, scores = index.search(np.array([[1.0, 0.0]]), k=2)
    >>> ids.tolist(), scores.tolist()
    ([[10, 12]], [[1.0, 0.5]])
    >>> index.remove(np.array([10]))
    >>> index.search(np.array([[1.0, 0.0]]), k=3, exclude=[np.array([12])])[0].tolist()
    [[11, -1, -1]]
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

import numpy as np

from funnel.core.artifacts import load_artifact, save_artifact
from funnel.core.errors import ValidationError

MAX_ID = 2**31 - 2
"""Largest id an index accepts: ids are the engine's dense item indices (``int32`` inside)."""

FORMAT_VERSION = 1


def check_ids(ids: np.ndarray, name: str = "ids") -> np.ndarray:
    """Return ``ids`` as a 1-D ``int64`` array; raise ``ValidationError`` unless all in ``[0, MAX_ID]``."""
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise ValidationError(f"must be a 1-D array, got shape {arr.shape}", field=name)
    if arr.size == 0:
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValidationError(f"must be integers, got dtype {arr.dtype}", field=name)
    arr = arr.astype(np.int64)
    if arr.min() < 0 or arr.max() > MAX_ID:
        raise ValidationError(f"must be in [0, {MAX_ID}]", field=name)
    return arr


def check_vectors(vectors: np.ndarray, dim: int, name: str = "vectors") -> np.ndarray:
    """Return ``vectors`` as a C-contiguous ``float32 [n, dim]`` array, or raise ``ValidationError``."""
    arr = np.asarray(vectors)
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValidationError(f"expected shape (n, {dim}), got {arr.shape}", field=name)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValidationError(f"must be numeric, got dtype {arr.dtype}", field=name)
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise ValidationError("must be finite (no NaN or inf)", field=name)
    return arr


def check_add(ids: np.ndarray, vectors: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate an ``add`` call; keep the last occurrence of a repeated id (re-add replaces)."""
    ids = check_ids(ids)
    vectors = check_vectors(vectors, dim)
    if len(ids) != len(vectors):
        raise ValidationError(f"{len(ids)} ids for {len(vectors)} vectors", field="ids")
    _, last = np.unique(ids[::-1], return_index=True)
    if len(last) != len(ids):
        keep = np.sort(len(ids) - 1 - last)
        ids, vectors = ids[keep], vectors[keep]
    return ids, vectors


def check_search(
    queries: np.ndarray, k: int, exclude: list[np.ndarray] | None, dim: int
) -> tuple[np.ndarray, list[np.ndarray] | None]:
    """Validate a ``search`` call: queries ``[q, dim]``, ``k >= 1``, one exclude array per query."""
    queries = check_vectors(queries, dim, name="queries")
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValidationError(f"must be a positive integer, got {k!r}", field="k")
    if exclude is not None:
        if len(exclude) != len(queries):
            raise ValidationError(
                f"{len(exclude)} exclude arrays for {len(queries)} queries", field="exclude"
            )
        exclude = [np.asarray(e, dtype=np.int64).ravel() for e in exclude]
    return queries, exclude


def empty_result(n_queries: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """All-padding result: ids ``-1``, scores ``-inf``."""
    return np.full((n_queries, k), -1, dtype=np.int64), np.full((n_queries, k), -np.inf, dtype=np.float32)


class ExactIndex:
    """Exact inner-product top-k: a dense ``float32`` matrix of the live vectors, scanned in blocks.

    Removal compacts the matrix at once, so memory follows the live catalogue. ``block_bytes``
    bounds the size of one block of scores (``queries x rows x 4`` bytes) during a search.
    """

    is_exact = True
    kind = "exact"

    def __init__(self, dim: int, block_bytes: int = 64 * 2**20) -> None:
        if dim < 1:
            raise ValidationError(f"must be >= 1, got {dim}", field="dim")
        self.dim = int(dim)
        self.block_bytes = int(block_bytes)
        self._vecs = np.zeros((0, self.dim), dtype=np.float32)  # capacity rows; first _n are live
        self._ids = np.zeros(0, dtype=np.int64)  # id of each row
        self._row_of = np.zeros(0, dtype=np.int32)  # row of each id, -1 when absent
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def memory_bytes(self) -> int:
        """Bytes held by the index arrays (vectors, row ids, id-to-row map)."""
        return int(self._vecs.nbytes + self._ids.nbytes + self._row_of.nbytes)

    def _rows(self, ids: np.ndarray) -> np.ndarray:
        """Rows of ``ids`` (``-1`` for ids not in the index)."""
        rows = np.full(len(ids), -1, dtype=np.int64)
        ok = (ids >= 0) & (ids < len(self._row_of))
        rows[ok] = self._row_of[ids[ok]]
        return rows

    def _reserve(self, n: int, max_id: int) -> None:
        if n > len(self._vecs):
            cap = max(n, int(len(self._vecs) * 1.5) + 16)
            vecs = np.zeros((cap, self.dim), dtype=np.float32)
            vecs[: self._n] = self._vecs[: self._n]
            ids = np.zeros(cap, dtype=np.int64)
            ids[: self._n] = self._ids[: self._n]
            self._vecs, self._ids = vecs, ids
        if max_id >= len(self._row_of):
            row_of = np.full(max(max_id + 1, int(len(self._row_of) * 1.5)), -1, dtype=np.int32)
            row_of[: len(self._row_of)] = self._row_of
            self._row_of = row_of

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Insert or replace the vectors of ``ids``."""
        ids, vectors = check_add(ids, vectors, self.dim)
        if len(ids) == 0:
            return
        rows = self._rows(ids)
        old = rows >= 0
        self._vecs[rows[old]] = vectors[old]
        new_ids = ids[~old]
        start = self._n
        self._reserve(start + len(new_ids), int(ids.max()))
        self._vecs[start : start + len(new_ids)] = vectors[~old]
        self._ids[start : start + len(new_ids)] = new_ids
        self._row_of[new_ids] = np.arange(start, start + len(new_ids), dtype=np.int32)
        self._n = start + len(new_ids)

    def remove(self, ids: np.ndarray) -> None:
        """Delete ``ids`` (unknown ids are ignored); the matrix is compacted at once."""
        rows = self._rows(check_ids(ids))
        rows = rows[rows >= 0]
        if len(rows) == 0:
            return
        keep = np.ones(self._n, dtype=bool)
        keep[rows] = False
        self._row_of[self._ids[rows]] = -1
        n = int(keep.sum())
        live_ids = self._ids[: self._n][keep]
        self._vecs = self._vecs[: self._n][keep]  # a tight copy: memory follows the live items
        self._ids = live_ids
        self._row_of[live_ids] = np.arange(n, dtype=np.int32)
        if n == 0 or int(live_ids.max()) < len(self._row_of) // 4:
            self._row_of = self._row_of[: (int(live_ids.max()) + 1 if n else 0)].copy()
        self._n = n

    def search(
        self, queries: np.ndarray, k: int, exclude: list[np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-``k`` ids and inner products per query, best first, padded with -1/-inf."""
        queries, exclude = check_search(queries, k, exclude, self.dim)
        nq = len(queries)
        best_s = np.full((nq, k), -np.inf, dtype=np.float32)
        best_r = np.full((nq, k), -1, dtype=np.int64)
        if self._n == 0 or nq == 0:
            return empty_result(nq, k)
        ex_rows = None
        if exclude is not None:
            ex_rows = [r[r >= 0] for r in (self._rows(e) for e in exclude)]
        block = max(1, self.block_bytes // (4 * nq))
        arange = np.arange(nq)[:, None]
        for start in range(0, self._n, block):
            stop = min(start + block, self._n)
            scores = queries @ self._vecs[start:stop].T
            if ex_rows is not None:
                for j, rows in enumerate(ex_rows):
                    inside = rows[(rows >= start) & (rows < stop)]
                    scores[j, inside - start] = -np.inf
            kk = min(k, stop - start)
            part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
            cand_s = np.concatenate([best_s, scores[arange, part]], axis=1)
            cand_r = np.concatenate([best_r, part + start], axis=1)
            top = np.argpartition(-cand_s, k - 1, axis=1)[:, :k]
            best_s, best_r = cand_s[arange, top], cand_r[arange, top]
        order = np.argsort(-best_s, axis=1, kind="stable")
        best_s, best_r = best_s[arange, order], best_r[arange, order]
        valid = (best_r >= 0) & np.isfinite(best_s)
        ids = np.where(valid, self._ids[np.where(valid, best_r, 0)], -1)
        return ids.astype(np.int64), np.where(valid, best_s, -np.inf).astype(np.float32)

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """The live ``(ids, vectors)`` (copies), in storage order."""
        return self._ids[: self._n].copy(), self._vecs[: self._n].copy()

    def save(self, folder: str | Path) -> None:
        """Write the live ids and vectors (``arrays.npz``) and a versioned manifest to ``folder``."""
        ids, vecs = self.vectors()
        save_artifact(
            folder,
            "ann.exact",
            FORMAT_VERSION,
            {"dim": self.dim, "block_bytes": self.block_bytes},
            {"ids": ids, "vectors": vecs},
        )

    @classmethod
    def load(cls, folder: str | Path) -> Self:
        """Read an index written by :meth:`save`."""
        art = load_artifact(folder, "ann.exact", FORMAT_VERSION)
        index = cls(dim=int(art.params["dim"]), block_bytes=int(art.params["block_bytes"]))
        index.add(art.arrays["ids"], art.arrays["vectors"])
        return index
