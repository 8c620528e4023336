"""The MMR λ trade-off on synthetic data: accuracy against diversity, per λ.

:func:`mmr_tradeoff` generates a synthetic world (:func:`funnel.data.synthetic.generate`), splits
its positive events per user (``strat``, 75 % train), fits a baseline (EASE by default) on the
training matrix, scores a slate of ``candidates`` unseen items per test user, and re-ranks each
slate to ``k`` items with only the MMR step at each λ (similarity: the items' synthetic categories,
what MMR diversifies when a catalogue has no embeddings). Per λ it reports NDCG@k against the
held-out items, intra-list diversity (mean pairwise ``1 − cos`` of the items' category vectors),
category entropy (bits, per list) and catalogue coverage, all from :mod:`funnel.eval.metrics`.
:func:`pick_lambda` then takes the largest λ whose NDCG@k is within ``max_loss`` (2 %) of λ = 0.

Run ``python -m benchmarks.rerank_tradeoff`` for the reported table.

Example:
    >>> from funnel.data.synthetic import SyntheticConfig
    >>> rows = mmr_tradeoff(SyntheticConfig(n_users=200, n_items=150, n_interactions=6000, seed=1),
    ...                     lambdas=(0.0, 0.5), candidates=50)
    >>> [r["lambda"] for r in rows], rows[1]["category_entropy"] >= rows[0]["category_entropy"]
    ([0.0, 0.5], True)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from funnel.data.synthetic import SyntheticConfig, generate
from funnel.eval.metrics import category_entropy, coverage, diversity, ranking_metrics
from funnel.eval.splits import make_split
from funnel.rerank.config import RerankConfig
from funnel.rerank.context import PageRequest, Slate, UserContext
from funnel.rerank.items import ItemPolicyTable
from funnel.rerank.reranker import ReRanker
from funnel.retrieval.models import make_model
from funnel.retrieval.sources.common import retrieval_data

LAMBDAS = (0.0, 0.2, 0.5, 0.8)
"""The λ values of the reported table."""


def mmr_tradeoff(
    config: SyntheticConfig,
    lambdas: tuple[float, ...] = LAMBDAS,
    k: int = 10,
    candidates: int = 100,
    model: str = "ease",
    params: dict[str, Any] | None = None,
    split_seed: int = 42,
) -> list[dict[str, Any]]:
    """The trade-off table: one row per λ (see the module docstring).

    Rows hold ``lambda``, ``ndcg`` (at ``k``), ``ndcg_change`` (relative to the first λ),
    ``diversity``, ``category_entropy``, ``coverage`` and ``users`` (the test users).
    """
    data = retrieval_data(*_tables(config))
    n_items = data.X.shape[1]
    table = ItemPolicyTable.from_catalogue(data.items)
    split = make_split(data.interactions, "strat", 0.75, split_seed)
    users = split.test_users
    baseline = make_model(model, **(params or {})).fit(split.train)
    slates, scores = baseline.recommend(split.train[users], candidates)
    categories = _category_matrix(table, n_items)
    rows: list[dict[str, Any]] = []
    for lam in lambdas:
        rr = ReRanker(RerankConfig(steps=("diversity",), mmr_lambda=lam), table)
        recs = np.full((len(users), k), -1, dtype=np.int64)
        for row, (slate_items, slate_scores) in enumerate(zip(slates, scores, strict=True)):
            ok = slate_items >= 0
            page = rr.rerank(Slate(slate_items[ok], slate_scores[ok]), UserContext(), PageRequest(k=k))
            recs[row, : len(page)] = page.items
        acc = ranking_metrics(recs, split.test[users], k)
        rows.append(
            {
                "lambda": lam,
                "ndcg": acc["ndcg"],
                "ndcg_change": 0.0 if not rows else acc["ndcg"] / rows[0]["ndcg"] - 1.0,
                "diversity": diversity(recs, categories),
                "category_entropy": category_entropy(recs, table.primary),
                "coverage": coverage(recs, n_items),
                "users": len(users),
            }
        )
    return rows


def _tables(config: SyntheticConfig) -> tuple[Any, Any]:
    ds = generate(config)
    return ds.interactions, ds.items


def _category_matrix(table: ItemPolicyTable, n_items: int) -> sp.csr_matrix:
    """Items × categories multi-hot matrix of the table's category codes."""
    rows, slots = np.nonzero(table.categories >= 0)
    cols = table.categories[rows, slots]
    return sp.csr_matrix(
        (np.ones(len(rows)), (rows, cols)), shape=(n_items, max(1, len(table.category_names)))
    )


def pick_lambda(rows: list[dict[str, Any]], max_loss: float = 0.02) -> float:
    """The largest λ whose NDCG is at most ``max_loss`` (relative) below the first row's."""
    ok = [r["lambda"] for r in rows if r["ndcg"] >= (1.0 - max_loss) * rows[0]["ndcg"]]
    return max(ok)
