"""Explanations: a human-readable reason and a machine-readable code for every recommended item.

The strongest signal wins. For a personalised item, the anchor is the history item most similar
to it (cosine between the two items' interaction columns): "Because you watched <title>". When no
history item is similar enough the reason is "Picked for you"; popularity fallbacks say
"Popular now".

The re-ranking stage's :class:`~funnel.rerank.explainer.Explainer` gives every item of a page its
reason from its strongest signal, with the codes below: "Because you watched <title>",
"Popular in <country>", "New from <creator>", "Trending now", "Sponsored", else "Picked for you".

Example:
    >>> import numpy as np, scipy.sparse as sp
    >>> X = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]], dtype=np.float32))
    >>> anchors, sims = ItemAnchors(X).anchor(np.array([0]), np.array([1, 2]))
    >>> anchors.tolist(), np.round(sims, 2).tolist()
    ([0, -1], [1.0, 0.0])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

BECAUSE_YOU_WATCHED = "because_you_watched"
PICKED_FOR_YOU = "picked_for_you"
POPULAR = "popular"
SIMILAR_TO = "similar_to"
TRENDING = "trending"
POPULAR_IN_COUNTRY = "popular_in_country"
NEW_FROM_CREATOR = "new_from_creator"
SPONSORED = "sponsored"
ANCHORED_CODES = frozenset({BECAUSE_YOU_WATCHED, SIMILAR_TO, "similar_to_what_you_like"})
"""Retrieval reason codes whose anchor is a history item ("Because you watched <anchor>")."""


@dataclass(frozen=True)
class Reason:
    """Why an item is shown: ``text`` for people, ``code`` for machines, ``anchor`` item index."""

    text: str
    code: str
    anchor: int = -1


class ItemAnchors:
    """Finds, for recommended items, the most similar item in a user's history."""

    def __init__(self, history: sp.csr_matrix, min_similarity: float = 0.01) -> None:
        self.min_similarity = min_similarity
        self._cols = sp.csc_matrix(history, dtype=np.float32)
        sq = np.asarray(self._cols.multiply(self._cols).sum(axis=0)).ravel()
        self._norms = np.sqrt(sq).astype(np.float32)
        self._norms[self._norms == 0] = 1.0

    def anchor(self, history_items: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each target, the most similar history item (or -1 below ``min_similarity``)."""
        targets = np.asarray(targets, dtype=np.int64)
        history_items = np.asarray(history_items, dtype=np.int64)
        n_items = self._cols.shape[1]
        history_items = history_items[history_items < n_items]
        out = np.full(len(targets), -1, dtype=np.int64)
        sims = np.zeros(len(targets), dtype=np.float32)
        known = (targets >= 0) & (targets < n_items)
        if not len(history_items) or not known.any():
            return out, sims
        h = self._cols[:, history_items]
        t = self._cols[:, targets[known]]
        s = (h.T @ t).toarray()
        s /= self._norms[history_items][:, None] * self._norms[targets[known]][None, :]
        best = s.argmax(axis=0)
        best_sim = s[best, np.arange(s.shape[1])]
        ok = best_sim >= self.min_similarity
        idx = np.flatnonzero(known)
        out[idx[ok]] = history_items[best[ok]]
        sims[idx] = best_sim
        return out, sims
