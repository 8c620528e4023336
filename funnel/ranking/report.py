"""The ranker's report: per-head AUC and NDCG@10 on held-out users, lift over retrieval order.

For held-out label-window users (their sampled candidate rows, the same rows for every ordering):

* ``auc[h]`` — ROC AUC of head ``h``'s probability against its label (rank statistic, ties half);
* ``ndcg@10[h]`` — mean NDCG@10 of the rows ordered by head ``h``, graded by the head's label;
* ``ndcg@10_final`` / ``ndcg@10_retrieval`` — engagement NDCG@10 of the final score's order and
  of the retrieval merge order (``merge_position``), and ``lift`` = final / retrieval − 1;
* ``importance`` — per head, the ten features with the largest total gain.

Example:
    >>> auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    0.75
    >>> round(group_ndcg(np.array([0.9, 0.1, 0.5]), np.array([0.0, 1.0, 1.0]), np.array([3]), 10), 4)
    0.6934
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.stats import rankdata

if TYPE_CHECKING:
    from funnel.ranking.dataset import TrainingRows
    from funnel.ranking.ranker import MultiObjectiveRanker


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """ROC AUC (Mann–Whitney; ``NaN`` when one class is absent)."""
    y = labels > 0
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if not n_pos or not n_neg:
        return float("nan")
    r = rankdata(scores)
    return float((r[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def group_ndcg(scores: np.ndarray, gains: np.ndarray, group_sizes: np.ndarray, k: int = 10) -> float:
    """Mean NDCG@k over groups with a positive gain (rows of each group ordered by ``scores``)."""
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    vals = []
    start = 0
    for size in group_sizes.tolist():
        s, g = scores[start : start + size], gains[start : start + size]
        start += size
        if not (g > 0).any():
            continue
        top = g[np.argsort(-s, kind="stable")][:k]
        ideal = np.sort(g)[::-1][:k]
        vals.append(float((top * discount[: len(top)]).sum() / (ideal * discount[: len(ideal)]).sum()))
    return float(np.mean(vals)) if vals else float("nan")


def ranking_report(ranker: MultiObjectiveRanker, rows: TrainingRows, k: int = 10) -> dict[str, Any]:
    """The report of ``ranker`` on ``rows`` (see the module docstring)."""
    heads = ranker.predict_heads(rows.X, threads=0)
    final = ranker.score(rows.X, threads=0)
    engaged = rows.labels["engage"]
    position = rows.X[:, rows.names.index("merge_position")]
    out: dict[str, Any] = {
        "heads": sorted(heads),
        "skipped": dict(ranker.skipped_),
        "auc": {h: round(auc(p, rows.labels[h]), 4) for h, p in heads.items()},
        f"ndcg@{k}": {
            h: round(group_ndcg(p, rows.labels[h], rows.group_sizes, k), 4) for h, p in heads.items()
        },
        "users": len(rows.group_sizes),
    }
    fin = group_ndcg(final, engaged, rows.group_sizes, k)
    ret = group_ndcg(-position, engaged, rows.group_sizes, k)
    out[f"ndcg@{k}_final"], out[f"ndcg@{k}_retrieval"] = round(fin, 4), round(ret, 4)
    out["lift"] = round(fin / ret - 1.0, 4) if ret > 0 else None
    out["importance"] = {h: dict(list(imp.items())[:10]) for h, imp in ranker.importance().items()}
    return out
