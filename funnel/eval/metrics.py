"""Offline metrics over ranked lists: accuracy, coverage, novelty, diversity.

Inputs are batch arrays: ``recs`` is ``int [n_users, k]`` of item indices, best first, ``-1`` for
padding (never a hit, ignored by the beyond-accuracy metrics); ``test`` is the ``n_users ×
n_items`` CSR matrix of held-out items (nonzero = relevant). Row ``u`` of both is the same user.
Accuracy metrics are averaged over the users with at least one test item (others are skipped).

With ``T_u`` the test items of user ``u``, ``h_r`` = 1 when the item at rank ``r`` (1-based) is in
``T_u``, and ``m_u = min(|T_u|, k)`` (the most hits a list of ``k`` can hold):

* ``precision@k = Σ_r h_r / k`` (padding counts as a miss);
* ``recall@k = Σ_r h_r / |T_u|`` (the usual definition, as in Microsoft Recommenders and RecBole;
  it cannot reach 1 when ``|T_u| > k``);
* ``ndcg@k = DCG / IDCG`` with ``DCG = Σ_r h_r / log2(r + 1)`` and ``IDCG = Σ_{r=1..m_u} 1 / log2(r + 1)``;
* ``map@k``: the mean of ``AP@k = Σ_r h_r · precision@r / m_u``;
* ``mrr@k``: the mean of ``1 / (rank of the first hit)``, 0 when the top ``k`` holds no hit;
* ``coverage = |distinct items in all lists| / n_items``;
* ``novelty``: with ``c_i`` the training users of item ``i`` and ``U`` the users with any training
  item, each recommended item carries ``−log2(max(c_i, 1) / U)`` bits; a user's novelty is the
  mean over their list, and the metric the mean over users with a non-empty list;
* ``diversity`` (intra-list): with ``v_i`` item ``i``'s vector (by default its training-matrix
  column, i.e. which users had it), a list's diversity is the mean over its item pairs of
  ``1 − cos(v_i, v_j)`` (a zero vector has cosine 0 with everything); the metric is the mean over
  lists holding at least two items;
* ``category_entropy``: the Shannon entropy (bits) of the category distribution within a list
  (each item counted under its category code; items without one and padding ignored), averaged
  over lists holding at least one categorised item — 0 when a list has a single category,
  ``log2(k)`` when its ``k`` items all differ.

Example:
    >>> import numpy as np, scipy.sparse as sp
    >>> test = sp.csr_matrix([[0, 1, 0, 1]])
    >>> recs = np.array([[1, 2]])                  # hit at rank 1, miss at rank 2
    >>> round(ndcg_at_k(recs, test), 4), recall_at_k(recs, test), mrr(recs, test)
    (0.6131, 0.5, 1.0)
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

_GRAM_ROWS = 1024
"""Items per chunk of the cosine Gram matrix in :func:`diversity` (bounds its memory)."""
ACCURACY = ("ndcg", "recall", "precision", "map", "mrr")
"""The names :func:`ranking_metrics` returns."""


def _recs(recs: np.ndarray, k: int | None) -> np.ndarray:
    recs = np.atleast_2d(np.asarray(recs, dtype=np.int64))
    if k is not None:
        if not 1 <= k <= recs.shape[1]:
            raise ValueError(f"k={k} must be in [1, {recs.shape[1]}] (the list length)")
        recs = recs[:, :k]
    return recs


def hits(recs: np.ndarray, test: sp.csr_matrix) -> np.ndarray:
    """``bool [n, k]``: whether each recommended item is a test item of its row (``-1`` never is)."""
    recs = _recs(recs, None)
    test = sp.csr_matrix(test)
    n, m = test.shape
    if recs.shape[0] != n:
        raise ValueError(f"recs has {recs.shape[0]} rows, test {n}")
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(test.indptr))
    relevant = rows * m + test.indices[: len(rows)]
    relevant = relevant[test.data[: len(rows)] != 0]
    valid = recs >= 0
    keys = np.arange(n, dtype=np.int64)[:, None] * m + np.where(valid, recs, 0)
    return np.isin(keys, relevant) & valid


def per_user_ranking_metrics(
    recs: np.ndarray, test: sp.csr_matrix, k: int | None = None
) -> dict[str, np.ndarray]:
    """NDCG, recall, precision, MAP and MRR at ``k`` for each user with test items (in row order)."""
    recs = _recs(recs, k)
    k = recs.shape[1]
    h = hits(recs, test).astype(np.float64)
    n_rel = np.diff(sp.csr_matrix(test).indptr)
    users = n_rel > 0
    h, n_rel = h[users], n_rel[users].astype(np.float64)
    m = np.minimum(n_rel, k)
    ranks = np.arange(1, k + 1, dtype=np.float64)
    discount = 1.0 / np.log2(ranks + 1.0)
    idcg = np.cumsum(discount)[m.astype(np.int64) - 1]
    cum_hits = np.cumsum(h, axis=1)
    first = np.where(h.any(axis=1), h.argmax(axis=1) + 1.0, np.inf)
    return {
        "ndcg": (h @ discount) / idcg,
        "recall": cum_hits[:, -1] / n_rel,
        "precision": cum_hits[:, -1] / k,
        "map": (h * cum_hits / ranks).sum(axis=1) / m,
        "mrr": 1.0 / first,
    }


def ranking_metrics(recs: np.ndarray, test: sp.csr_matrix, k: int | None = None) -> dict[str, float]:
    """NDCG, recall, precision, MAP and MRR at ``k`` (default: the list length).

    Each is the mean over the users with test items (0.0 when there are none).
    """
    per_user = per_user_ranking_metrics(recs, test, k)
    return {name: float(v.mean()) if len(v) else 0.0 for name, v in per_user.items()}


def ndcg_at_k(recs: np.ndarray, test: sp.csr_matrix, k: int | None = None) -> float:
    """Mean NDCG@k with binary relevance (see the module docstring)."""
    return float(ranking_metrics(recs, test, k)["ndcg"])


def recall_at_k(recs: np.ndarray, test: sp.csr_matrix, k: int | None = None) -> float:
    """Mean recall@k: hits / |test|."""
    return float(ranking_metrics(recs, test, k)["recall"])


def precision_at_k(recs: np.ndarray, test: sp.csr_matrix, k: int | None = None) -> float:
    """Mean precision@k: hits / k."""
    return float(ranking_metrics(recs, test, k)["precision"])


def map_at_k(recs: np.ndarray, test: sp.csr_matrix, k: int | None = None) -> float:
    """Mean average precision@k, normalised by min(|test|, k)."""
    return float(ranking_metrics(recs, test, k)["map"])


def mrr(recs: np.ndarray, test: sp.csr_matrix, k: int | None = None) -> float:
    """Mean reciprocal rank of the first hit within the top ``k`` (0 without a hit)."""
    return float(ranking_metrics(recs, test, k)["mrr"])


def coverage(recs: np.ndarray, n_items: int) -> float:
    """Distinct recommended items (padding ignored) / ``n_items``."""
    recs = _recs(recs, None)
    return float(len(np.unique(recs[recs >= 0])) / n_items) if n_items else 0.0


def novelty(recs: np.ndarray, train: sp.csr_matrix) -> float:
    """Mean self-information ``−log2(max(c_i, 1) / U)`` of recommended items (see the module docstring)."""
    recs = _recs(recs, None)
    train = sp.csr_matrix(train)
    n_train_users = int(np.count_nonzero(np.diff(train.indptr)))
    counts = np.bincount(train.indices, minlength=train.shape[1])
    bits = -np.log2(np.maximum(counts, 1) / max(n_train_users, 1))
    valid = recs >= 0
    per_slot = np.where(valid, bits[np.where(valid, recs, 0)], 0.0)
    n_valid = valid.sum(axis=1)
    lists = n_valid > 0
    return float((per_slot.sum(axis=1)[lists] / n_valid[lists]).mean()) if lists.any() else 0.0


def diversity(recs: np.ndarray, item_vectors: sp.spmatrix | np.ndarray) -> float:
    """Mean intra-list distance ``1 − cos(v_i, v_j)`` over pairs (``item_vectors``: one row per item).

    Pass ``train.T`` for the training-matrix columns, or an items × categories matrix.
    """
    recs = _recs(recs, None)
    n, k = recs.shape
    ia, ib = np.triu_indices(k, 1)
    pa, pb = recs[:, ia], recs[:, ib]
    ok = (pa >= 0) & (pb >= 0)
    pairs = ok.sum(axis=1)
    lists = pairs > 0
    if not lists.any():
        return 0.0
    owner = np.broadcast_to(np.arange(n)[:, None], pa.shape)[ok]
    R, pos = np.unique(np.concatenate([pa[ok], pb[ok]]), return_inverse=True)
    pa, pb = pos[: len(owner)], pos[len(owner) :]
    V = sp.csr_matrix(item_vectors, dtype=np.float64)[R]
    norms = np.sqrt(np.asarray(V.multiply(V).sum(axis=1)).ravel())
    V = sp.csr_matrix(sp.diags(1.0 / np.where(norms > 0, norms, 1.0)) @ V)
    VT = V.T.tocsr()
    cos = np.zeros(len(pa))
    order = np.argsort(pa, kind="stable")
    bounds = np.searchsorted(pa[order], np.arange(0, len(R) + _GRAM_ROWS, _GRAM_ROWS))
    for c, s in enumerate(range(0, len(R), _GRAM_ROWS)):
        sel = order[bounds[c] : bounds[c + 1]]
        if not len(sel):
            continue
        G = sp.csr_matrix(V[s : s + _GRAM_ROWS] @ VT)  # cosines of this chunk with every item of R
        G.sort_indices()
        keys = np.repeat(np.arange(G.shape[0], dtype=np.int64), np.diff(G.indptr)) * len(R) + G.indices
        want = (pa[sel] - s) * len(R) + pb[sel]
        at = np.minimum(np.searchsorted(keys, want), max(len(keys) - 1, 0))
        found = keys[at] == want if len(keys) else np.zeros(len(want), dtype=bool)
        cos[sel[found]] = G.data[at[found]]
    total = np.bincount(owner, weights=1.0 - cos, minlength=n)
    return float((total[lists] / pairs[lists]).mean())


def category_entropy(recs: np.ndarray, item_categories: np.ndarray) -> float:
    """Mean per-list Shannon entropy (bits) of the items' categories (``item_categories[i]``, ``-1`` = none).

    >>> category_entropy(np.array([[0, 1, 2, 3], [0, 1, -1, -1]]), np.array([5, 5, 7, 8]))
    0.75
    """
    recs = _recs(recs, None)
    cats = np.asarray(item_categories, dtype=np.int64)
    code = np.where(recs >= 0, cats[np.where(recs >= 0, recs, 0)], -1)
    total = (code >= 0).sum(axis=1)
    lists = total > 0
    if not lists.any():
        return 0.0
    n, k = code.shape
    srt = np.sort(code, axis=1)
    new = np.ones_like(srt, dtype=bool)
    new[:, 1:] = srt[:, 1:] != srt[:, :-1]
    run_id = np.cumsum(new.ravel()) - 1  # one id per (list, category) run
    counts = np.bincount(run_id, weights=(srt.ravel() >= 0).astype(np.float64))
    owner = np.repeat(np.arange(n), k)[new.ravel()]
    p = counts / np.maximum(total[owner], 1)
    h = np.bincount(owner, weights=np.where(p > 0, -p * np.log2(np.where(p > 0, p, 1.0)), 0.0), minlength=n)
    return float(h[lists].mean())
