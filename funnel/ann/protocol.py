"""The ``AnnIndex`` protocol: inner-product top-k search over item vectors, with add and remove.

Ids are item indices (``int64``, the engine's dense item ids). Every implementation — the exact
reference and the FAISS ones — passes one contract suite (``tests/contract/test_ann_contract.py``).
Exact search is the reference for measuring recall.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, Self, runtime_checkable

import numpy as np


@runtime_checkable
class AnnIndex(Protocol):
    """Inner-product nearest-neighbour search over ``dim``-dimensional float32 vectors.

    Semantics every implementation keeps:

    * ``add(ids, vectors)``: adding an id that is already present replaces its vector.
    * ``remove(ids)``: on return, no search ever returns those ids again (unknown ids are ignored).
    * ``search(queries, k, exclude)``: ``(ids int64 [q, k], scores float32 [q, k])``, best first,
      padded with ``-1`` / ``-inf`` when fewer than ``k`` live items qualify; ``exclude`` is one
      array of ids per query that must not be returned.
    * ``len(index)`` is the number of live (searchable) items.
    """

    dim: int
    is_exact: bool

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Insert or replace the vectors of ``ids``."""
        ...

    def remove(self, ids: np.ndarray) -> None:
        """Make ``ids`` unsearchable, effective on return."""
        ...

    def search(
        self, queries: np.ndarray, k: int, exclude: list[np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ids and inner-product scores per query row."""
        ...

    def __len__(self) -> int: ...

    def save(self, folder: str | Path) -> None:
        """Persist to ``folder`` with a format version (no pickle)."""
        ...

    @classmethod
    def load(cls, folder: str | Path) -> Self:
        """Read an index written by :meth:`save`."""
        ...
