"""Diversity: maximal marginal relevance (:class:`MMRDiversifier`) and hard caps (:class:`DiversityCaps`).

**MMR.** Position by position the page takes the eligible item maximising
``(1 − λ) · rel(i) − λ · max_{j placed} sim(i, j)``, where ``rel`` is the adjusted score min-max
scaled to ``[0, 1]`` over the eligible candidates and ``sim`` the cosine of item vectors: the item
embeddings when the table has them, else the items' category sets (multi-hot), so two items of the
same single category have similarity 1. ``λ = 0`` is the ranker's order. The running maximum
similarity is kept incrementally (one ``[n, d]`` product per placed item): ``O(k · n · d)``.

**Caps.** In the top ``top_n`` positions at most ``max_per_creator`` items share a creator and at
most ``max_per_category`` share a primary (first) category; anywhere on the page at most
``max_consecutive`` items in a row share a primary category. Items without a creator / category
are not counted. ``None`` disables a cap. Caps are constraints, not preferences: when they leave
no eligible item for a position, the page ends there.

Example:
    >>> from funnel.rerank.context import PageRequest, Slate, UserContext
    >>> from funnel.rerank.items import ItemPolicyTable
    >>> from funnel.rerank.state import RerankState
    >>> import pyarrow as pa
    >>> t = ItemPolicyTable.from_catalogue(pa.table({"item_id": ["a", "b", "c"],
    ...     "categories": [["news"], ["news"], ["sports"]]}))
    >>> st = RerankState.start(t, Slate(np.array([0, 1, 2]), np.array([1.0, 0.9, 0.5])),
    ...                        UserContext(), PageRequest(k=3))
    >>> caps = DiversityCaps(max_per_category=1, top_n=2)
    >>> caps.prepare(st); caps.placed(st, 0, 0)
    >>> caps.allowed(st, 1).tolist()        # no second news item in the top 2
    [False, False, True]
"""

from __future__ import annotations

import numpy as np

from funnel.core.errors import ConfigError
from funnel.rerank.state import BaseStep, RerankState

_CODE_TABLE = 1 << 16
"""Category codes below this are mapped to columns by a table (else by a sort)."""


def category_vectors(categories: np.ndarray) -> np.ndarray:
    """Unit-norm multi-hot rows (``float32 [n, distinct categories]``) of ``-1``-padded category codes.

    The columns are the codes present, in code order, found through a ``max code + 1`` table rather
    than a sort (``np.unique``) when the codes are below :data:`_CODE_TABLE`.

    Example:
        >>> np.round(category_vectors(np.array([[7, 2], [2, 2], [-1, -1]])).astype(float), 3).tolist()
        [[0.707, 0.707], [1.0, 0.0], [0.0, 0.0]]
    """
    valid = categories >= 0
    if not valid.any():
        return np.zeros((len(categories), 1), np.float32)
    rows, slots = np.nonzero(valid)
    codes = categories[rows, slots]
    if int(codes.max()) < _CODE_TABLE:
        present = np.zeros(int(codes.max()) + 1, np.intp)
        present[codes] = 1
        column = np.cumsum(present) - 1  # code -> its column among the codes present
        columns, width = column[codes], int(column[-1]) + 1
    else:  # a catalogue of many categories: the sort is cheaper than the table
        local, columns = np.unique(codes, return_inverse=True)
        width = len(local)
    out = np.zeros((len(categories), width), np.float32)
    out[rows, columns] = 1.0  # a code repeated in a row sets its column once
    norms = np.sqrt(out @ np.ones(out.shape[1], np.float32))
    out *= np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)[:, None]
    return out


class MMRDiversifier(BaseStep):
    """Maximal marginal relevance with diversity weight ``lambda_`` (``0`` = relevance only).

    Args:
        lambda_: the weight of the similarity penalty, in ``[0, 1]``.
        use_embeddings: use the table's embeddings when it has them (else categories).
    """

    name = "diversity"

    def __init__(self, lambda_: float = 0.2, use_embeddings: bool = True) -> None:
        if not 0.0 <= lambda_ <= 1.0:
            raise ConfigError(f"MMR lambda must be in [0, 1], got {lambda_}")
        self.lambda_, self.use_embeddings = lambda_, use_embeddings

    def prepare(self, state: RerankState) -> None:
        """Set the diversity weight and gather the candidates' unit vectors."""
        state.diversity_weight = self.lambda_
        if self.lambda_ == 0:
            return
        emb, cats = state.table.embeddings, state.table.categories
        if emb is not None and self.use_embeddings:
            state.memo[self.name] = emb[state.items]
        elif cats.shape[1] == 1:  # one category per item: similarity is "same category"
            state.memo[self.name] = cats[state.items, 0]
        else:
            state.memo[self.name] = category_vectors(cats[state.items])

    def placed(self, state: RerankState, position: int, candidate: int) -> None:
        """Raise every candidate's penalty to its similarity with the placed item, if larger."""
        vectors = state.memo.get(self.name)
        if vectors is None:
            return
        if vectors.ndim == 1:
            category = vectors[candidate]
            if category >= 0:
                np.maximum(state.penalty, vectors == category, out=state.penalty)
        else:
            np.maximum(state.penalty, vectors @ vectors[candidate], out=state.penalty)


class DiversityCaps(BaseStep):
    """Per-creator and per-category caps in the top ``top_n``, and a cap on category runs.

    Args:
        max_per_creator, max_per_category: caps within the first ``top_n`` positions (``None``: off).
        max_consecutive: most items in a row with the same primary category (``None``: off).
    """

    name = "caps"

    def __init__(
        self,
        max_per_creator: int | None = 2,
        max_per_category: int | None = 5,
        top_n: int = 20,
        max_consecutive: int | None = 3,
    ) -> None:
        for name, cap in (("max_per_creator", max_per_creator), ("max_per_category", max_per_category)):
            if cap is not None and cap < 1:
                raise ConfigError(f"{name} must be >= 1 or None, got {cap}")
        if max_consecutive is not None and max_consecutive < 1:
            raise ConfigError(f"max_consecutive must be >= 1 or None, got {max_consecutive}")
        self.max_per_creator, self.max_per_category = max_per_creator, max_per_category
        self.top_n, self.max_consecutive = top_n, max_consecutive

    def prepare(self, state: RerankState) -> None:
        """Gather creators and primary categories; nothing is capped yet."""
        creator = state.table.creator[state.items]
        primary = state.table.primary[state.items]
        state.memo[self.name] = {
            "creator": creator,
            "primary": primary,
            "open": np.ones(len(creator), bool),  # not capped (top_n only)
            "creator_count": {},
            "category_count": {},
            "run": (-1, 0),  # (category, length) of the current run at the end of the page
        }

    def allowed(self, state: RerankState, position: int) -> np.ndarray | None:
        """The candidates no cap excludes at ``position``."""
        memo = state.memo[self.name]
        mask = memo["open"] if position < self.top_n else None
        category, length = memo["run"]
        if self.max_consecutive is not None and category >= 0 and length >= self.max_consecutive:
            run_ok = memo["primary"] != category
            mask = run_ok if mask is None else mask & run_ok
        return mask

    def placed(self, state: RerankState, position: int, candidate: int) -> None:
        """Count the placed item's creator and category; close those that reached their cap."""
        memo = state.memo[self.name]
        creator, category = int(memo["creator"][candidate]), int(memo["primary"][candidate])
        run_category, length = memo["run"]
        memo["run"] = (category, length + 1 if category == run_category else 1)
        if position >= self.top_n:
            return
        for key, counts, cap, value in (
            ("creator", memo["creator_count"], self.max_per_creator, creator),
            ("primary", memo["category_count"], self.max_per_category, category),
        ):
            if cap is None or value < 0:
                continue
            counts[value] = counts.get(value, 0) + 1
            if counts[value] >= cap:
                memo["open"] = memo["open"] & (memo[key] != value)
