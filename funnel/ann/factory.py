"""Make an ANN index by name, and load any saved one by reading its manifest.

Kinds: ``"exact"`` (:class:`~funnel.ann.exact.ExactIndex`, the reference), ``"hnsw"``
(:class:`~funnel.ann.faiss_index.HnswIndex`), ``"ivf_sq8"`` and ``"ivf_pq"``
(:mod:`funnel.ann.faiss_ivf`), ``"ivf_pq_fs"`` (:mod:`funnel.ann.faiss_fastscan`). All of them
are :class:`~funnel.ann.protocol.AnnIndex`.

Example:
    >>> import numpy as np, tempfile
    >>> index = make_index("hnsw", dim=3, M=8, ef_search=32)
    >>> index.add(np.array([1, 2]), np.eye(3, dtype=np.float32)[:2])
    >>> folder = tempfile.mkdtemp()
    >>> index.save(folder)
    >>> again = load_index(folder)
    >>> type(again).__name__, len(again), again.search(np.eye(3)[:1], k=1)[0].tolist()
    ('HnswIndex', 2, [[1]])
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from funnel.ann.exact import ExactIndex
from funnel.ann.faiss_fastscan import IvfPqFastScanIndex
from funnel.ann.faiss_index import HnswIndex, omp_threads, set_omp_threads
from funnel.ann.faiss_ivf import IvfPqIndex, IvfSq8Index
from funnel.ann.protocol import AnnIndex
from funnel.core.artifacts import read_manifest
from funnel.core.errors import ConfigError, CorruptDataError

INDEX_KINDS: dict[str, type] = {
    "exact": ExactIndex,
    "hnsw": HnswIndex,
    "ivf_sq8": IvfSq8Index,
    "ivf_pq": IvfPqIndex,
    "ivf_pq_fs": IvfPqFastScanIndex,
}
"""Index classes by kind name."""

__all__ = ["INDEX_KINDS", "load_index", "make_index", "omp_threads", "set_omp_threads"]


def make_index(kind: str, dim: int, **params: Any) -> AnnIndex:
    """A new, empty index of ``kind`` over ``dim``-dimensional vectors; ``params`` go to its class.

    Unknown kinds and unknown parameters raise :class:`ConfigError` (naming the valid ones).

    Example:
        >>> make_index("exact", dim=8).is_exact
        True
    """
    cls = INDEX_KINDS.get(kind)
    if cls is None:
        raise ConfigError(f"unknown ANN index kind {kind!r}; expected one of {sorted(INDEX_KINDS)}")
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "dim")]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ConfigError(f"{kind} index: unknown parameter(s) {unknown}; accepted: {accepted}")
    return cls(dim=dim, **params)


def load_index(folder: str | Path) -> AnnIndex:
    """Load any index saved by ``save``, choosing the class from the manifest's ``kind``."""
    kind = str(read_manifest(folder).get("kind", ""))
    cls = INDEX_KINDS.get(kind.removeprefix("ann."))
    if not kind.startswith("ann.") or cls is None:
        raise CorruptDataError(f"{folder}: artifact kind {kind!r} is not an ANN index")
    return cls.load(folder)
