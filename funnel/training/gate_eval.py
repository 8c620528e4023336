"""What the gate measures: a version's served lists on a held-out window, and its cold-start pages.

Both versions a gate compares are asked through the serving path (:class:`~funnel.pipeline.Pipeline`
over the saved bundle: retrieval, ranker and re-ranker when the bundle has them, else the
baseline) for the same users, and their lists are mapped by item id into one index space, so
the metrics of :mod:`funnel.eval.metrics` compare them directly.

Example:
    >>> import pyarrow as pa
    >>> t = pa.table({"user_id": ["u1", "u1", "u2"], "item_id": ["a", "b", "a"],
    ...               "type": ["click"] * 3, "timestamp": pa.array([1, 2, 3], pa.timestamp("ms"))})
    >>> [(r.event.user_id, r.event.timestamp) for r in records_of(t, ["u1"], 1, 5)]
    [('u1', 2)]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from funnel.core.idmap import IdMap
from funnel.core.schema import Interaction
from funnel.eval.metrics import coverage, diversity, ranking_metrics
from funnel.events.protocol import LogRecord
from funnel.pipeline import Pipeline
from funnel.retrieval.sources.common import user_attributes
from funnel.training.bundle import Bundle

COLD_USER = "__funnel_gate_cold_user__"
"""A user id no data holds: what a first visit looks like to a version."""
_BATCH = 256


def open_version(folder: str | Path) -> Pipeline:
    """The serving pipeline of the bundle in ``folder``, as ``Engine.pipeline`` builds it."""
    bundle = Bundle.load(folder)
    return Pipeline(bundle, folder)


def served_lists(
    pipeline: Pipeline, user_ids: Sequence[str], k: int, items: IdMap, fresh: Sequence[LogRecord] = ()
) -> np.ndarray:
    """``int64 [n_users, k]``: each user's top ``k`` as indices of ``items`` (``-1`` pads).

    ``fresh`` events are folded in first (:meth:`Pipeline.observe`, as serving catches up with
    the event log), so a version trained on older data sees the same histories as a newer one.
    """
    if fresh:
        pipeline.observe(list(fresh))
    out = np.full((len(user_ids), k), -1, dtype=np.int64)
    for start in range(0, len(user_ids), _BATCH):
        batch = list(user_ids[start : start + _BATCH])
        for r, ranked in enumerate(pipeline.recommend(batch, k)):
            idx = items.lookup(pipeline.bundle.items.keys_of(ranked.items[:k]))
            out[start + r, : len(idx)] = idx
    return out


def list_metrics(
    recs: np.ndarray, test: sp.csr_matrix | None, item_vectors: sp.csr_matrix, n_listed: int
) -> dict[str, float]:
    """NDCG@k against ``test`` rows (skipped when ``None``), catalogue coverage and intra-list diversity.

    ``coverage`` is distinct recommended items over the ``n_listed`` recommendable ones;
    ``diversity`` uses ``item_vectors`` (one row per item, e.g. the history matrix transposed).
    """
    out = {
        "coverage": coverage(recs, max(n_listed, 1)),
        "diversity": diversity(recs, item_vectors),
        "empty_lists": int(np.sum(~(recs >= 0).any(axis=1))),
        "n_users": int(recs.shape[0]),
    }
    if test is not None:
        out["ndcg"] = ranking_metrics(recs, test, recs.shape[1])["ndcg"]
    return out


def countries_of(users: pa.Table) -> list[str | None]:
    """The countries of the data's users, sorted; ``None`` too when some user has none."""
    if not users.num_rows:
        return [None]
    values = user_attributes(users, ("country",))["country"]
    found: list[str | None] = sorted({str(v) for v in values if v})
    stated_by_all = bool(found) and not (values == "").any()
    return ([] if stated_by_all else [None]) + found


def cold_pages(pipeline: Pipeline, countries: Sequence[str | None], k: int) -> dict[str, int]:
    """How many items a first-time user gets, per country (``"-"``: none stated)."""
    out = {}
    for country in countries:
        segments = {"country": country} if country else None
        out[country or "-"] = len(pipeline.recommend([COLD_USER], k, segments)[0].items)
    return out


def records_of(events: pa.Table, user_ids: Sequence[str], after_ms: int, until_ms: int) -> list[LogRecord]:
    """``events`` of ``user_ids`` with ``after_ms < timestamp <= until_ms``, as log records."""
    ts = pc.cast(events.column("timestamp"), pa.int64())
    keep = pc.and_(
        pc.and_(pc.greater(ts, after_ms), pc.less_equal(ts, until_ms)),
        pc.is_in(events.column("user_id"), value_set=pa.array(list(user_ids), pa.string())),
    )
    rows = events.filter(keep)
    cols = {c: rows.column(c).to_pylist() for c in ("user_id", "item_id", "type")}
    values = rows.column("value").to_pylist() if "value" in rows.column_names else [None] * rows.num_rows
    stamps = pc.cast(rows.column("timestamp"), pa.int64()).to_pylist()
    return [
        LogRecord(n, Interaction(u, i, t, int(s), v))
        for n, (u, i, t, s, v) in enumerate(
            zip(cols["user_id"], cols["item_id"], cols["type"], stamps, values, strict=True)
        )
    ]
