"""The baseline registry: model names -> classes, construction by name, loading by manifest kind.

Example:
    >>> sorted(MODELS)
    ['als', 'ease', 'itemknn', 'pop']
    >>> make_model("itemknn", k_neighbours=50)
    ItemKNNRecommender(k_neighbours=50, shrink=100.0)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from funnel.core.artifacts import read_manifest
from funnel.core.errors import ConfigError, CorruptDataError
from funnel.retrieval.als import ALSRecommender
from funnel.retrieval.base import BaseRecommender
from funnel.retrieval.ease import EASERecommender
from funnel.retrieval.item_knn import ItemKNNRecommender
from funnel.retrieval.popularity import PopularityRecommender

MODELS: dict[str, type[BaseRecommender]] = {
    "pop": PopularityRecommender,
    "itemknn": ItemKNNRecommender,
    "ease": EASERecommender,
    "als": ALSRecommender,
}
"""Model name (also the artifact ``kind``) -> class."""


def make_model(name: str, **params: Any) -> BaseRecommender:
    """A new, unfitted model ``name`` with hyper-parameters ``params`` (defaults for the rest)."""
    try:
        cls = MODELS[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(MODELS)}") from None
    try:
        return cls(**params)
    except TypeError as exc:
        raise ConfigError(f"bad parameters for model {name!r}: {exc}") from None


def load_model(folder: str | Path) -> BaseRecommender:
    """Load any saved baseline, choosing the class from the manifest's ``kind``."""
    kind = read_manifest(folder).get("kind")
    if kind not in MODELS:
        raise CorruptDataError(f"{folder}: artifact kind {kind!r} is not a known model ({', '.join(MODELS)})")
    return MODELS[str(kind)].load(folder)
