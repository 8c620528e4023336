"""Catalogue lookups of the recommendation service: policy checks, category members, the lake's latest row.

These read the serving pipeline's item table or the data lake for
:class:`~funnel.api.service.RecommendationService`: :func:`allowed_by_policy` keeps padding and the
popular fallback inside the same hard policy the ranked page obeys, :func:`items_by_category`
serves the ``category`` filter, :func:`current_item` gives the row an item upsert changes.

Example:
    >>> import tempfile
    >>> from funnel.engine import Engine
    >>> current_item(Engine(tempfile.mkdtemp()), "nope") is None
    True
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from funnel.engine import Engine
from funnel.pipeline import Pipeline
from funnel.rerank.filters import policy_ok


def allowed_by_policy(
    pipeline: Pipeline, items: np.ndarray, user_id: str, segments: dict[str, str]
) -> np.ndarray:
    """Per item: allowed by the ranking pipeline's hard policy (age, region) for this user and request.

    The ranked page obeys it already; padding and the popular fallback must too. A baseline-only
    bundle has no policy table: everything passes.
    """
    ranking = pipeline.ranking
    if ranking is None or not len(items):
        return np.ones(len(items), dtype=bool)
    seg = ranking.user_segments(user_id, segments)
    unknown_age = ranking.reranker.config.unknown_age_years
    return policy_ok(ranking.reranker.table, items, seg.get("age_bucket"), seg.get("country"), unknown_age)


def items_by_category(engine: Engine, pipeline: Pipeline) -> dict[str, np.ndarray]:
    """Category name -> the pipeline's item indices in it (from the lake's catalogue)."""
    items = engine.lake.read("items", columns=["item_id", "categories"])
    if not items.num_rows:
        return {}
    idx = pipeline.bundle.items.lookup(items.column("item_id"))
    cats = items.column("categories").combine_chunks()
    names = np.asarray(pc.list_flatten(cats).to_pylist(), dtype=object)
    owners = idx[np.asarray(pc.list_parent_indices(cats))]
    ok = (owners >= 0) & (owners < pipeline.n_items)
    out: dict[str, list[int]] = {}
    for name, owner in zip(names[ok].tolist(), owners[ok].tolist(), strict=True):
        out.setdefault(name, []).append(owner)
    return {name: np.asarray(sorted(set(v)), dtype=np.int64) for name, v in out.items()}


def current_item(engine: Engine, item_id: str) -> pa.Table | None:
    """The lake's latest row of ``item_id`` (one-row ``ITEMS`` table), or None."""
    import pyarrow.dataset as ds

    from funnel.core.schema import ITEMS

    parts = [str(p) for p in engine.lake.parts("items")]
    if not parts:
        return None
    found = ds.dataset(parts, schema=ITEMS, format="parquet").to_table(filter=pc.field("item_id") == item_id)
    return found.slice(found.num_rows - 1) if found.num_rows else None
