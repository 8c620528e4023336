"""Re-ranking and policy: filters, diversity, freshness, exploration, explanations.

Entry point: ``ReRanker(config, ItemPolicyTable.from_catalogue(items)).rerank(slate, user, request, rng)``
returns a :class:`Page`. See :mod:`funnel.rerank.reranker`.
"""

from funnel.rerank.config import DEFAULT_STEPS, RerankConfig
from funnel.rerank.context import Page, PageRequest, Slate, StepTrace, UserContext
from funnel.rerank.items import ItemPolicyTable
from funnel.rerank.reranker import ReRanker
from funnel.rerank.state import BaseStep, RerankState, RerankStep

__all__ = [
    "DEFAULT_STEPS",
    "BaseStep",
    "ItemPolicyTable",
    "Page",
    "PageRequest",
    "ReRanker",
    "RerankConfig",
    "RerankState",
    "RerankStep",
    "Slate",
    "StepTrace",
    "UserContext",
]
