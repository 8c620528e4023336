"""Index size vs listed catalogue: how much of the catalogue each retrieval source can still find.

Sources that search an ANN index (``als``, ``content``, ``two_tower``: their ``index_``) can only
return the items in it. An index that holds far fewer items than the catalogue lists means
items are unreachable through that source: new items not indexed (the source cannot grow its
catalogue and no retraining happened), items without text (content), or without interactions
(``als`` above 100k items, where all-zero factor rows are left out). Training leaves unlisted
items out of every index; an item unlisted since stays in the served index until the next
training (it is filtered at query time), so a ratio above 1 counts the unlistings since the last
build, and it returns to at most 1 once the worker retrained and the server swapped the version in.

The alarm ``index_coverage`` fires when the smallest ``len(index) / listed`` falls below
``MonitorConfig.index_min_ratio`` (0.9).

Example:
    >>> index_alarm({"als": 900, "content": 1000}, 1000).status
    'ok'
    >>> index_alarm({"als": 500}, 1000).message
    'smallest index: als holds 500 of 1000 listed items (0.50; limit 0.9)'
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from funnel.monitoring.alarms import Alarm, MonitorConfig


def index_sizes(pipeline: Any) -> dict[str, int]:
    """Items in each retrieval source's ANN index of a served :class:`~funnel.pipeline.Pipeline`.

    Empty when the pipeline has no retrieval stage (a baseline-only bundle).
    """
    ranking = getattr(pipeline, "ranking", None)
    if ranking is None:
        return {}
    return _sizes(getattr(ranking.pipeline.retriever_, "sources_", {}))


def saved_index_sizes(bundle_folder: str | Path) -> dict[str, int]:
    """Items in each ANN index of a saved bundle's retriever (``ranking/retriever``), without serving it.

    Loads the retrieval sources only (milliseconds), not the ranker and its feature store.
    """
    folder = Path(bundle_folder) / "ranking" / "retriever"
    if not folder.is_dir():
        return {}
    from funnel.retrieval.retriever import Retriever

    return _sizes(Retriever.load(folder).sources_)


def _sizes(sources: Mapping[str, Any]) -> dict[str, int]:
    out = {}
    for name, source in sources.items():
        index = getattr(source, "index_", None)
        if index is not None and hasattr(index, "__len__"):
            out[name] = len(index)
    return out


def index_ratios(sizes: Mapping[str, int], n_listed: int) -> dict[str, float]:
    """``len(index) / listed`` per source (NaN without listed items)."""
    return {k: (v / n_listed if n_listed else math.nan) for k, v in sizes.items()}


def index_alarm(sizes: Mapping[str, int], n_listed: int, config: MonitorConfig | None = None) -> Alarm:
    """``index_coverage``: the smallest index holds less than ``index_min_ratio`` of the listed items."""
    limit = (config or MonitorConfig()).index_min_ratio
    ratios = index_ratios(sizes, n_listed)
    if not ratios or not n_listed:
        return Alarm.below("index_coverage", math.nan, limit, "ratio", "no ANN index or no listed items")
    name = min(ratios, key=lambda k: ratios[k])
    msg = (
        f"smallest index: {name} holds {sizes[name]} of {n_listed} listed items "
        f"({ratios[name]:.2f}; limit {limit:g})"
    )
    return Alarm.below("index_coverage", ratios[name], limit, "ratio", msg)
