"""Weighted rank fusion: merge the sources by the sum of their rank-discounted votes.

The quota merge (:mod:`funnel.retrieval.merge`) gives each source a prefix of its list and keeps
the union: an item found by three sources at rank 300 counts no more than one found by a single
source at rank 300. That is why a union of sources can do worse than its best member: every slot
a weak source takes displaces the best source's tail, and agreement between sources — the best
evidence a candidate is good — is thrown away. Fusion keeps it. For one user, candidate ``c`` at
0-based rank ``r_s`` in source ``s`` with weight ``w_s`` gets

    fused(c) = sum over the sources returning c of  w_s * total / (total + r_s)

and the ``total`` items with the highest fused score are kept (ties: the better best rank). A
source with weight 0 never brings a candidate in (its score and rank are still recorded). One
source with all the weight reproduces its own list, so :func:`fusion_weights` — coordinate ascent
on a validation set's Recall@``total``, started from the best of equal weights and every single
source — never ends below the best single source *on the data it learns from*. The *strongest
source* of an item is the one with the largest term; its reason and anchor become the item's.

Example:
    >>> from funnel.retrieval.sources.common import candidates
    >>> a = candidates(np.array([5, 6, 7]), np.array([0.9, 0.8, 0.7]), "picked_for_you")
    >>> b = candidates(np.array([7, 8]), np.array([30.0, 20.0]), "trending")
    >>> m = fuse_one([a, b], ("als", "trending"), np.array([1.0, 1.0]), total=3)
    >>> m.items.tolist(), m.reason.tolist()  # 7 is found by both
    ([7, 5, 6], ['trending', 'picked_for_you', 'picked_for_you'])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from funnel.retrieval.merge import DEFAULT_TOTAL, MergedCandidates, assemble, batch_quotas, flatten
from funnel.retrieval.source import Candidates
from funnel.retrieval.sources.common import member


def fuse_one(
    per_source: Sequence[Candidates], sources: Sequence[str], weights: np.ndarray, total: int = DEFAULT_TOTAL
) -> MergedCandidates:
    """Fuse one user's candidate lists (``per_source[s]`` from ``sources[s]``) under ``weights``."""
    flat = flatten(per_source, sources, weights, total, "weights")
    if flat is None:
        return assemble(per_source, sources, *[np.zeros(0, np.int64)] * 4)
    items, src, rank = flat
    term = np.asarray(weights, dtype=np.float64)[src] * total / (total + rank)
    uniq, inv = np.unique(items, return_inverse=True)
    fused = np.bincount(inv, weights=term, minlength=len(uniq))
    order = np.lexsort((src, -term, inv))  # per item: its largest term first (ties: earlier source)
    first = order[np.r_[True, inv[order][1:] != inv[order][:-1]]]
    first = first[fused[inv[first]] > 0]
    best = first[np.lexsort((rank[first], -fused[inv[first]]))][:total]
    return assemble(per_source, sources, best, items, src, rank)


def fuse(
    per_source: Mapping[str, Sequence[Candidates]],
    weights: Mapping[str, float] | Sequence[Mapping[str, float]],
    total: int = DEFAULT_TOTAL,
) -> list[MergedCandidates]:
    """Fuse a batch: ``per_source[name][u]`` is user ``u``'s list from source ``name``.

    ``weights`` is one mapping for every user or one per user (only their ratios matter); a source
    missing from a mapping has weight 0 (recorded, never selecting).
    """
    names, per_user = batch_quotas(per_source, weights)
    return [
        fuse_one([per_source[name][u] for name in names], names, q, total) for u, q in enumerate(per_user)
    ]


class _Pool:
    """Every (user, candidate) of validation lists with its per-source fusion terms, for fast scoring."""

    def __init__(self, lists: Mapping[str, Sequence[np.ndarray]], test: sp.csr_matrix, total: int) -> None:
        n_users, m = test.shape
        keys, terms, srcs = [], [], []
        for s, name in enumerate(lists):
            lens = np.array([len(x) for x in lists[name]], dtype=np.int64)
            if lens.sum():
                flat = np.concatenate([np.asarray(x, dtype=np.int64) for x in lists[name]])
                keys.append(np.repeat(np.arange(n_users, dtype=np.int64), lens) * m + flat)
                rank = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)
                terms.append(total / (total + rank))
                srcs.append(np.full(lens.sum(), s))
        self.n_src, self.total = len(lists), total
        self.present = np.array([any(len(x) for x in per_user) for per_user in lists.values()], dtype=bool)
        uniq, inv = np.unique(np.concatenate(keys or [np.empty(0, np.int64)]), return_inverse=True)
        self.terms = np.zeros((self.n_src, len(uniq)), np.float32)  # row s: source s's term per candidate
        if len(uniq):
            self.terms[np.concatenate(srcs), inv] = np.concatenate(terms)
        self.users = uniq // m
        self.bounds = np.searchsorted(self.users, np.arange(n_users + 1))
        n_test = np.diff(test.indptr)
        truth = np.repeat(np.arange(n_users, dtype=np.int64), n_test) * m + test.indices
        self.hits = np.flatnonzero(member(uniq, truth))
        self.worth = 1.0 / n_test[self.users[self.hits]]
        self.n_eval = max(int((n_test > 0).sum()), 1)

    def recall(self, fused: np.ndarray) -> float:
        """Mean Recall@``total`` of the fused lists (``fused``: one score per candidate)."""
        thr = np.zeros(len(self.bounds) - 1)
        for u in np.flatnonzero(np.diff(self.bounds) > self.total):
            a, b = self.bounds[u], self.bounds[u + 1]
            thr[u] = np.partition(fused[a:b], b - a - self.total)[b - a - self.total]
        got = fused[self.hits]
        return float(self.worth[(got > 0) & (got >= thr[self.users[self.hits]])].sum() / self.n_eval)


def fusion_weights(
    lists: Mapping[str, Sequence[np.ndarray]],
    test: sp.csr_matrix,
    total: int,
    steps: Sequence[float] = (2.0,),
    max_rounds: int = 4,
) -> dict[str, float]:
    """Per source, the fusion weight (largest 1) maximising the lists' fused Recall@``total``.

    Coordinate ascent: start from the best of equal weights and each source alone, then, for each
    step size, pass over the sources (at most ``max_rounds`` times) trying each weight times and
    divided by the step, and 0 (a zero weight tries a quarter of the largest and the largest),
    keeping the first change that raises recall. A source without any candidate gets weight 0.

    Args:
        lists: source name -> per user, the ranked candidate items (user ``u`` is row ``u`` of ``test``).
        test: the held-out items (binary ``n_users × n_items``).
        total: the fused list length scored.
        steps: multiplicative step sizes, largest first.
        max_rounds: passes over the sources per step size.
    """
    pool = _Pool(lists, test, total)
    n, on = pool.n_src, pool.present.astype(np.float64)
    if not on.any():
        return dict.fromkeys(lists, 1.0)
    starts = [on, *np.eye(n)[pool.present]]
    scored = [pool.recall(w @ pool.terms) for w in starts]
    w = starts[int(np.argmax(scored))].copy()
    best, fused = max(scored), w @ pool.terms
    for step in steps:
        for _ in range(max_rounds):
            improved = False
            for s in np.flatnonzero(pool.present):
                tries = (w[s] * step, w[s] / step, 0.0) if w[s] > 0 else (w.max() / 4, w.max())
                for x in tries:
                    if x == 0.0 and np.count_nonzero(w) == 1:
                        continue
                    cand = fused + (x - w[s]) * pool.terms[s]
                    got = pool.recall(cand)
                    if got > best + 1e-9:
                        best, fused, w[s], improved = got, cand, x, True
                        break
            if not improved:
                break
    return {name: float(v / w.max()) for name, v in zip(lists, w, strict=True)}
