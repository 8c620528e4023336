"""The source registry: names -> classes, construction by name, loading by manifest kind.

The sources of this package are always registered; ``content`` and ``two_tower`` (heavier
dependencies) are imported on first use by :func:`source_class` and then registered.

Example:
    >>> [name for name in ("als", "item_knn", "trending", "new_items", "editorial") if name in SOURCES]
    ['als', 'item_knn', 'trending', 'new_items', 'editorial']
    >>> make_source("trending", half_life_days=3.0)
    TrendingSource(half_life_days=3.0, segment_fields=['country', 'age_bucket'], max_items=2000, ...)
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

from funnel.core.artifacts import read_manifest
from funnel.core.errors import ConfigError, CorruptDataError
from funnel.retrieval.sources.als_source import ALSSource
from funnel.retrieval.sources.ease_source import EASESource
from funnel.retrieval.sources.editorial import EditorialSource
from funnel.retrieval.sources.item_knn_source import ItemKNNSource
from funnel.retrieval.sources.new_items import NewItemsSource
from funnel.retrieval.sources.trending import TrendingSource

SOURCES: dict[str, type[Any]] = {
    "als": ALSSource,
    "item_knn": ItemKNNSource,
    "trending": TrendingSource,
    "new_items": NewItemsSource,
    "editorial": EditorialSource,
    "ease": EASESource,
}
"""Source name -> class."""

OPTIONAL: dict[str, tuple[str, str]] = {
    "content": ("funnel.retrieval.sources.content", "ContentSource"),
    "two_tower": ("funnel.retrieval.sources.two_tower", "TwoTowerSource"),
}
"""Sources imported on first use (heavier dependencies): name -> (module, class)."""


def source_class(name: str) -> type[Any] | None:
    """The class of source ``name`` (importing a heavier one on first use), ``None`` if unknown."""
    if name not in SOURCES and name in OPTIONAL:
        module, cls = OPTIONAL[name]
        SOURCES[name] = getattr(importlib.import_module(module), cls)
    return SOURCES.get(name)


def artifact_kind(cls: type[Any]) -> str:
    """The manifest ``kind`` a source class saves under (``source:<name>`` or its module's ``KIND``)."""
    return str(getattr(sys.modules[cls.__module__], "KIND", None) or f"source:{cls.name}")


def make_source(name: str, **params: Any) -> Any:
    """A new, unfitted source ``name`` with hyper-parameters ``params`` (defaults for the rest)."""
    cls = source_class(name)
    if cls is None:
        raise ConfigError(f"unknown source {name!r}; known: {', '.join([*SOURCES, *OPTIONAL])}")
    try:
        return cls(**params)
    except TypeError as exc:
        raise ConfigError(f"bad parameters for source {name!r}: {exc}") from None


def load_source(folder: str | Path) -> Any:
    """Load any saved source, choosing the class from the manifest's ``kind``."""
    kind = read_manifest(folder).get("kind")
    if not str(kind).startswith("source:"):
        for name in OPTIONAL:
            source_class(name)
    by_kind = {artifact_kind(cls): cls for cls in SOURCES.values()}
    if kind not in by_kind:
        raise CorruptDataError(f"{folder}: artifact kind {kind!r} is not a known source")
    return by_kind[str(kind)].load(folder)
