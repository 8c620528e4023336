"""Merge the candidates of several sources: quotas, dedup, every source's score and rank kept.

For one user, candidate ``c`` at 0-based rank ``r`` in source ``s`` with quota ``q_s`` has priority
``r / q_s`` (``inf`` when ``q_s = 0``: such a source never brings a candidate in, but its score is
still recorded for candidates other sources bring). An item's priority is its best over sources;
the ``total`` items with the lowest priority are kept, in that order (ties: the earlier source).
So each source gets its quota when the quotas sum to ``total``, sources are cut in proportion when
they sum to more, and slots left by overlap or by short lists go to the next-best candidates of
all sources in proportion to their quotas. The *strongest source* of an item is the one giving
its best priority; its reason and anchor become the item's. Every source's score and rank come out
as ``[n_candidates, n_sources]`` arrays, ``NaN`` where a source did not return the item — the
ranker's features. All of it is array arithmetic (a few sorts per user).

Example:
    >>> from funnel.retrieval.sources.common import candidates
    >>> a = candidates(np.array([5, 6, 7]), np.array([0.9, 0.8, 0.7]), "picked_for_you")
    >>> b = candidates(np.array([7, 8]), np.array([30.0, 20.0]), "trending")
    >>> m = merge_one([a, b], ("als", "trending"), np.array([2, 1]), total=3)
    >>> m.items.tolist(), m.reason.tolist()
    ([5, 7, 6], ['picked_for_you', 'trending', 'picked_for_you'])
    >>> m.ranks.tolist()
    [[0.0, nan], [2.0, 0.0], [1.0, nan]]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from funnel.core.errors import ValidationError
from funnel.retrieval.source import Candidates

DEFAULT_TOTAL = 1000
"""Candidates kept per user by default."""


@dataclass
class MergedCandidates:
    """One user's merged candidates, in merge order (best priority first).

    Attributes:
        items: ``int32 [n]`` item indices, no duplicates.
        scores: ``float32 [n, n_sources]`` each source's score, ``NaN`` when it did not return the item.
        ranks: ``float32 [n, n_sources]`` each source's 0-based rank, ``NaN`` likewise.
        reason: reason code of the strongest source per item; anchor: its anchor (``int32``).
        source: ``int16 [n]`` index (into ``sources``) of the strongest source.
        sources: the source names, the columns of ``scores`` and ``ranks``.
        position: each candidate's 0-based position in the merged list it came from, once the
            list was cut or reordered (``NaN`` for items added from elsewhere); ``None`` while
            the list is in merge order.
    """

    items: np.ndarray
    scores: np.ndarray
    ranks: np.ndarray
    reason: np.ndarray
    anchor: np.ndarray
    source: np.ndarray
    sources: tuple[str, ...]
    position: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.items)

    def positions(self) -> np.ndarray:
        """``float32 [n]`` merge positions (``position``, or ``0..n-1`` in merge order)."""
        if self.position is not None:
            return self.position.astype(np.float32, copy=False)
        return np.arange(len(self.items), dtype=np.float32)

    def source_names(self) -> np.ndarray:
        """The strongest source's name per candidate."""
        return np.asarray(self.sources, dtype=object)[self.source]


def flatten(
    per_source: Sequence[Candidates], sources: Sequence[str], weights: np.ndarray, total: int, field: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """One user's lists as flat ``(items, source, rank)`` arrays, checked; ``None`` when all are empty.

    ``weights`` (quotas or fusion weights, named ``field`` in errors) has one entry per source.
    """
    if len(per_source) != len(sources) or len(weights) != len(sources):
        raise ValidationError(f"per_source, sources and {field} must have one entry per source", field=field)
    if total < 1:
        raise ValidationError(f"total must be >= 1, got {total}", field="total")
    lens = np.array([len(c) for c in per_source], dtype=np.int64)
    if lens.sum() == 0:
        return None
    items = np.concatenate([c.items for c in per_source]).astype(np.int64)
    src = np.repeat(np.arange(len(sources), dtype=np.int64), lens)
    rank = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)
    return items, src, rank


def merge_one(
    per_source: Sequence[Candidates], sources: Sequence[str], quotas: np.ndarray, total: int = DEFAULT_TOTAL
) -> MergedCandidates:
    """Merge one user's candidate lists (``per_source[s]`` from ``sources[s]``) under ``quotas``."""
    flat = flatten(per_source, sources, quotas, total, "quotas")
    if flat is None:
        return assemble(per_source, sources, *[np.zeros(0, np.int64)] * 4)
    items, src, rank = flat
    q = np.asarray(quotas, dtype=np.float64)[src]
    with np.errstate(divide="ignore", invalid="ignore"):
        prio = np.where(q > 0, rank / np.where(q > 0, q, 1.0), np.inf)
    order = np.lexsort((src, prio))  # merge order: best priority first, then the earlier source
    _, first = np.unique(items[order], return_index=True)  # each item's first entry in that order
    first.sort()
    best = order[first]
    best = best[np.isfinite(prio[best])][:total]  # the kept items, in merge order
    return assemble(per_source, sources, best, items, src, rank)


def assemble(
    per_source: Sequence[Candidates],
    sources: Sequence[str],
    best: np.ndarray,
    items: np.ndarray,
    src: np.ndarray,
    rank: np.ndarray,
) -> MergedCandidates:
    """The merged candidates ``items[best]`` (in that order) with every source's score and rank.

    ``items``, ``src`` and ``rank`` are the concatenated lists' items, source indices and ranks;
    ``best`` indexes the kept entries (one per item), each the entry of the item's strongest source.
    """
    n_src = len(sources)
    if len(best) == 0:
        return _empty(tuple(sources))
    score = np.concatenate([c.scores for c in per_source]).astype(np.float32)
    chosen = items[best]
    by_item = np.argsort(chosen, kind="stable")
    pos = np.searchsorted(chosen[by_item], items)
    pos = np.minimum(pos, len(chosen) - 1)
    hit = chosen[by_item][pos] == items
    row = by_item[pos[hit]]
    scores = np.full((len(chosen), n_src), np.nan, dtype=np.float32)
    ranks = np.full((len(chosen), n_src), np.nan, dtype=np.float32)
    scores[row, src[hit]] = score[hit]
    ranks[row, src[hit]] = rank[hit]
    reason = np.concatenate([c.reason for c in per_source]).astype(object)[best]
    anchor = np.concatenate([c.anchor for c in per_source]).astype(np.int32)[best]
    return MergedCandidates(
        chosen.astype(np.int32), scores, ranks, reason, anchor, src[best].astype(np.int16), tuple(sources)
    )


def _empty(sources: tuple[str, ...]) -> MergedCandidates:
    n = len(sources)
    return MergedCandidates(
        np.empty(0, np.int32),
        np.empty((0, n), np.float32),
        np.empty((0, n), np.float32),
        np.empty(0, dtype=object),
        np.empty(0, np.int32),
        np.empty(0, np.int16),
        sources,
    )


def merge(
    per_source: Mapping[str, Sequence[Candidates]],
    quotas: Mapping[str, float] | Sequence[Mapping[str, float]],
    total: int = DEFAULT_TOTAL,
) -> list[MergedCandidates]:
    """Merge a batch: ``per_source[name][u]`` is user ``u``'s list from source ``name``.

    ``quotas`` is one mapping for every user or one per user; a source missing from a mapping has
    quota 0 (recorded, never selecting).
    """
    names, per_user = batch_quotas(per_source, quotas)
    return [
        merge_one([per_source[name][u] for name in names], names, q, total) for u, q in enumerate(per_user)
    ]


def batch_quotas(
    per_source: Mapping[str, Sequence[Candidates]],
    quotas: Mapping[str, float] | Sequence[Mapping[str, float]],
) -> tuple[tuple[str, ...], list[np.ndarray]]:
    """The source names and, per user, the quota of each (0 when missing), checked against the lists."""
    names = tuple(per_source)
    n = len(next(iter(per_source.values()))) if names else 0
    if any(len(lists) != n for lists in per_source.values()):
        raise ValidationError("every source must return one list per user", field="per_source")
    per_user = [quotas] * n if isinstance(quotas, Mapping) else list(quotas)
    if len(per_user) != n:
        raise ValidationError(f"{len(per_user)} quota mappings for {n} users", field="quotas")
    return names, [np.array([float(q.get(name, 0.0)) for name in names]) for q in per_user]
