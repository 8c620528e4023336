"""The request trace at the HTTP edge: what the service's own filters did, and the trace as JSON.

The stages record a :class:`~funnel.ranking.trace.RequestTrace` in NumPy terms (item indices);
the API service adds its request-level step (:func:`record_request`: the ``cursor``, ``exclude``,
unlisted, ``category`` and policy filters, the popular top-up of a short page) and the route turns
the whole into the documented :class:`~funnel.api.schemas.DebugOut` (:func:`trace_out`): item
ids, finite floats or ``null``, lists cut at :data:`MAX_LISTED` items.

Example:
    >>> from funnel.core.idmap import IdMap
    >>> t = RequestTrace()
    >>> t.record_ranking(np.array([2, 0, 1]), np.array([0.9, 0.5, float("nan")]))
    >>> why = filter_reasons(served=[], exclude=["c"], unlisted=set(), category_items=None)
    >>> record_request(t, IdMap(["a", "b", "c"]), np.array([2, 0, 1]), ["a", "b"], 2, 2, why)
    >>> out = trace_out(t, "closed")
    >>> out.served, [(r.item_id, r.reason) for r in out.rerank.steps[0].removed]
    (['a', 'b'], [('c', 'exclude')])
    >>> [(m.item_id, m.rank, m.position) for m in out.rerank.moves], out.ranking.items[2].score
    ([('a', 1, 0), ('b', 2, 1)], None)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from typing import Any

import numpy as np

from funnel.api.schemas import (
    DebugOut,
    MoveOut,
    RankedItemOut,
    RankingOut,
    RemovedOut,
    RerankOut,
    RetrievalOut,
    SourceCandidateOut,
    SourceOut,
    StepOut,
)  # fmt: skip
from funnel.ranking.trace import RequestTrace
from funnel.rerank.context import StepTrace

MAX_LISTED = 100
"""Items listed per step and per list of a step in the JSON trace (totals are given in full)."""


def filter_reasons(
    served: Sequence[str],
    exclude: Sequence[str],
    unlisted: Collection[str],
    category_items: np.ndarray | None,
) -> Callable[[int, str], str]:
    """Why the service's filters drop an item ``(index, id)``: the first check it fails.

    The checks are the cursor's served ids, ``exclude``, the unlisted ids and the category's
    items; an item failing none was dropped by the age/region policy (the remaining check).
    """
    cursor, excluded = set(served), set(exclude)

    def why(item: int, key: str) -> str:
        if key in cursor:
            return "cursor"
        if key in excluded:
            return "exclude"
        if key in unlisted:
            return "unlisted"
        if category_items is not None and not np.isin(item, category_items):
            return "category"
        return "policy"

    return why


def record_request(
    trace: RequestTrace,
    ids: Any,
    ranked: np.ndarray,
    page: Sequence[str],
    kept: int,
    limit: int,
    why: Callable[[int, str], str],
) -> None:
    """Record the service's step and the served page in ``trace``.

    ``ranked``: the pipeline's list (indices); ``page``: the ids recommended, of which the first
    ``kept`` passed the filters and the rest are the popular top-up; ``limit``: the page size;
    ``ids``: the id map (``keys_of``, ``lookup``); ``why``: see :func:`filter_reasons`.
    """
    passed = set(page[:kept])
    removed: dict[str, list[int]] = {}
    for item, key in zip(ranked.tolist(), ids.keys_of(ranked), strict=True):
        if key not in passed:
            removed.setdefault(why(item, key), []).append(item)
    for reason, items in removed.items():
        trace.step("request").remove(np.asarray(items, np.int64), reason)
    served = list(page[:limit])
    if len(served) > kept:
        trace.step("popular_top_up").inserted.extend(ids.lookup(served[kept:]).tolist())
    trace.finish(ids.lookup(served), ids)


def _num(x: Any) -> float | None:
    """A finite float, else ``None`` (JSON has no NaN or infinities)."""
    x = float(x)
    return x if math.isfinite(x) else None


def trace_out(trace: RequestTrace, breaker: str) -> DebugOut:
    """The JSON form of ``trace`` (``breaker``: the event-log circuit breaker's state)."""
    name = _namer(trace)
    served = trace.served.tolist()
    position = {item: p for p, item in enumerate(served)}
    retrieval = None
    if trace.sources or trace.merged is not None:
        sources = [
            SourceOut(
                name=s.name,
                count=s.count,
                error=s.error,
                top=[
                    SourceCandidateOut(item_id=key, score=_num(score), rank=r)
                    for r, (key, score) in enumerate(zip(name(s.items), s.scores.tolist(), strict=True))
                ],
            )
            for s in trace.sources
        ]
        retrieval = RetrievalOut(sources=sources, merged=trace.merged)
    ranking, rank = None, {}
    if trace.ranked is not None:
        ranked = trace.ranked
        rank = {item: r for r, item in enumerate(ranked.items.tolist())}
        rows = trace.detail_rows()
        ranking = RankingOut(
            candidates=len(ranked.items),
            weights=ranked.weights,
            items=[
                _ranked_item(trace, int(r), key, position)
                for r, key in zip(rows, name(ranked.items[rows]), strict=True)
            ],
        )
    moves = [
        MoveOut(item_id=key, rank=rank.get(item), position=p)
        for p, (item, key) in enumerate(zip(served, name(trace.served), strict=True))
        if rank.get(item) != p
    ]
    rerank = RerankOut(
        steps=[_step(s, name) for s in trace.steps],
        moves=moves,
        explored=name(trace.explored),
        sponsored=name(trace.sponsored),
    )
    return DebugOut(
        path=trace.path,
        fallback=trace.fallback,
        notes=trace.notes,
        timings_ms={k: round(v, 3) for k, v in trace.timings_ms.items()},
        breaker=breaker,
        retrieval=retrieval,
        ranking=ranking,
        rerank=rerank,
        served=name(trace.served),
    )


def _namer(trace: RequestTrace) -> Callable[[Any], list[str]]:
    """Item indices -> ids through the trace's id map (``#<index>`` when it has none)."""

    def name(items: Any) -> list[str]:
        items = np.asarray(items, np.int64)
        if trace.ids is None:
            return [f"#{i}" for i in items.tolist()]
        return list(trace.ids.keys_of(items))

    return name


def _ranked_item(trace: RequestTrace, row: int, key: str, position: dict[int, int]) -> RankedItemOut:
    ranked = trace.ranked
    assert ranked is not None
    features = {}
    if ranked.features is not None:
        features = {
            n: _num(v) for n, v in zip(ranked.feature_names, ranked.features[row].tolist(), strict=True)
        }
    return RankedItemOut(
        item_id=key,
        rank=row,
        score=_num(ranked.scores[row]),
        position=position.get(int(ranked.items[row])),
        source=None if ranked.source is None else str(ranked.source[row]),
        merge_position=None if ranked.merge_position is None else _int(ranked.merge_position[row]),
        heads={h: _num(p[row]) for h, p in ranked.heads.items()},
        features=features,
    )


def _int(x: Any) -> int | None:
    return int(x) if math.isfinite(float(x)) else None


def _step(step: StepTrace, name: Callable[[Any], list[str]]) -> StepOut:
    removed = step.removed[:MAX_LISTED]
    return StepOut(
        step=step.step,
        removed=[
            RemovedOut(item_id=key, reason=why)
            for key, why in zip(name(removed), step.removed_reason[:MAX_LISTED], strict=True)
        ],
        removed_total=len(step.removed),
        moved=name(list(dict.fromkeys(step.moved))[:MAX_LISTED]),  # once each, first time first
        inserted=name(step.inserted[:MAX_LISTED]),
        rescored=name(step.rescored[:MAX_LISTED]),
        notes=_plain(step.notes),
    )


def _plain(value: Any) -> Any:
    """``value`` with NumPy scalars and non-finite floats made JSON-safe."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray | np.generic):
        return _plain(value.tolist())
    return _num(value) if isinstance(value, float) else value
