"""Candidate sources, each a :class:`~funnel.retrieval.source.CandidateSource`.

``als``, ``item_knn``, ``trending``, ``new_items``, ``editorial`` (and ``content`` / ``two_tower``
when present).

Build them by name with :func:`~funnel.retrieval.sources.registry.make_source`, load any saved one
with :func:`~funnel.retrieval.sources.registry.load_source`.
"""

from funnel.retrieval.sources.als_source import ALSSource
from funnel.retrieval.sources.common import BaseSource, retrieval_data
from funnel.retrieval.sources.editorial import EditorialSource
from funnel.retrieval.sources.item_knn_source import ItemKNNSource
from funnel.retrieval.sources.new_items import NewItemsSource
from funnel.retrieval.sources.registry import SOURCES, load_source, make_source
from funnel.retrieval.sources.trending import TrendingSource

__all__ = [
    "SOURCES",
    "ALSSource",
    "BaseSource",
    "EditorialSource",
    "ItemKNNSource",
    "NewItemsSource",
    "TrendingSource",
    "load_source",
    "make_source",
    "retrieval_data",
]
