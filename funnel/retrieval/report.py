"""Retrieval evaluation: Recall@K of held-out items in each source's candidates and in the merged set.

The interactions are split with :func:`funnel.eval.splits.make_split` (``temporal`` by default:
what trending and new items are for). The sources are fitted on the training events only (the
catalogue and users tables whole), with ``now`` = the split's cut (or the last training event).
Each test user is then asked for candidates from their training history — recent items newest
first, segments from their attributes — as of ``now``. For every ``K`` a source's list is cut to
``K``, and the merged set is :class:`~funnel.retrieval.retriever.Retriever`'s merge with
``total = K``. ``recall@K`` is the mean over test users of ``|hits| / |test items|``.

Example:
    >>> import pyarrow as pa
    >>> t = pa.table({"user_id": list("aaabbbccc"), "item_id": list("xyzxyzxyw"),
    ...               "timestamp": [1, 2, 9, 3, 4, 10, 5, 6, 11]})
    >>> rep = retrieval_report(t, "temporal", ks=(2,), sources={"trending": {}}, ratio=0.6)
    >>> round(rep["results"]["trending"]["recall@2"], 3), sorted(rep["results"])  # c's y of y, w
    (0.167, ['merged', 'trending'])
    >>> report_rows(rep)[0]
    {'source': 'trending', 'recall@2': 0.1667}
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from funnel.core.interactions import Interactions
from funnel.eval.splits import make_split
from funnel.retrieval.merge import merge
from funnel.retrieval.retriever import Retriever
from funnel.retrieval.source import Candidates, RetrievalData, RetrievalQuery
from funnel.retrieval.sources.common import retrieval_data, user_attributes

SEGMENT_FIELDS = ("country", "age_bucket", "device")


def load_tables(path: str | Path, fmt: str) -> tuple[pa.Table, pa.Table | None, pa.Table | None]:
    """``(interactions, items, users)`` of a dataset read with ``import_dataset`` (missing kinds: None)."""
    from funnel.data.importers import import_dataset

    got: dict[str, list[pa.Table]] = {}
    import_dataset(path, fmt, sink=lambda kind, t: got.setdefault(kind, []).append(t), progress=False)
    tables = {kind: pa.concat_tables(ts) for kind, ts in got.items()}
    return tables["interactions"], tables.get("items"), tables.get("users")


def _recent(inter: Interactions, n_users: int) -> list[np.ndarray]:
    """Per user, their distinct positive items, most recent (last event) first."""
    pos = inter.positive_mask()
    u, i, ts = (
        inter.user_idx[pos].astype(np.int64),
        inter.item_idx[pos].astype(np.int64),
        inter.timestamp[pos],
    )
    order = np.lexsort((-ts, u))
    u, i = u[order], i[order]
    key = u * max(1, inter.n_items) + i
    _, first = np.unique(key, return_index=True)
    first = np.sort(first)
    u, i = u[first], i[first]
    bounds = np.searchsorted(u, np.arange(n_users + 1))
    return [i[bounds[v] : bounds[v + 1]] for v in range(n_users)]


def _query(data: RetrievalData, X: sp.csr_matrix, users: np.ndarray) -> RetrievalQuery:
    """The request of ``users`` at ``data.now_ms``: training histories, recent items, segments."""
    recent = _recent(data.interactions, data.X.shape[0])
    attrs = user_attributes(data.users, SEGMENT_FIELDS)
    segments = [{f: attrs[f][u] for f in SEGMENT_FIELDS if attrs[f][u]} for u in users]
    ids = data.users.column("user_id").take(pa.array(users)).to_pylist()
    return RetrievalQuery(ids, X[users], [recent[u] for u in users], segments, data.now_ms)


def _recall(lists: Sequence[np.ndarray], test: sp.csr_matrix) -> float:
    """Mean over rows of ``|list ∩ test row| / |test row|`` (rows without test items skipped)."""
    m = test.shape[1]
    lens = np.array([len(x) for x in lists], dtype=np.int64)
    got = np.repeat(np.arange(len(lists), dtype=np.int64), lens) * m
    got += np.concatenate([np.asarray(x, dtype=np.int64) for x in lists]) if lens.sum() else 0
    n_test = np.diff(test.indptr)
    truth_rows = np.repeat(np.arange(test.shape[0], dtype=np.int64), n_test)
    got = np.sort(got)
    truth = truth_rows * m + test.indices
    pos = np.minimum(np.searchsorted(got, truth), max(len(got) - 1, 0))
    hit = got[pos] == truth if len(got) else np.zeros(len(truth), dtype=bool)
    per_user = np.bincount(truth_rows[hit], minlength=test.shape[0])
    users = n_test > 0
    return float(np.mean(per_user[users] / n_test[users])) if users.any() else 0.0


def retrieval_report(
    interactions: pa.Table | Interactions,
    protocol: str = "temporal",
    ks: Sequence[int] = (500, 1000),
    sources: Mapping[str, Mapping[str, Any]] | None = None,
    seed: int = 42,
    *,
    items: pa.Table | None = None,
    users: pa.Table | None = None,
    ratio: float = 0.8,
    quotas: Mapping[str, float] | None = None,
    max_users: int | None = None,
    batch: int = 1024,
    dataset: str = "dataset",
) -> dict[str, Any]:
    """Recall@K of each source and of the merged candidates on one split.

    Args:
        interactions: the events (a canonical table or an ``Interactions``).
        protocol: ``temporal``, ``usertemporal`` or ``strat`` (see :mod:`funnel.eval.splits`).
        ks: candidate counts to score.
        sources: source name -> hyper-parameters (default: the Retriever's default sources).
        seed: the split's seed (``strat``) and the test-user sample's.
        items: the catalogue table (optional; publish dates, metadata-only items).
        users: the users table (optional; segments from its attributes).
        ratio: the training fraction.
        quotas: the merge's quota weights (default: the Retriever's).
        max_users: evaluate a random sample of at most this many test users.
        batch: users per retrieval call.
        dataset: the name written in the report.

    Returns:
        ``{"dataset", "protocol", "ratio", "n_users", "n_items", "seconds", "results": {source or
        "merged": {"recall@K": value}}}``.
    """
    t0 = time.perf_counter()
    full = retrieval_data(interactions, items, users)
    inter = full.interactions
    split = make_split(inter, protocol, ratio, seed)
    m = inter.n_items
    if split.cut_timestamp is not None:
        mask = inter.timestamp <= split.cut_timestamp
    else:
        tr = split.train.tocoo()
        mask = np.isin(
            inter.user_idx.astype(np.int64) * m + inter.item_idx, tr.row.astype(np.int64) * m + tr.col
        )
    train_inter = inter.subset(mask)
    now = split.cut_timestamp if split.cut_timestamp is not None else int(train_inter.timestamp.max())
    data = RetrievalData(train_inter, split.train, full.items, full.users, int(now))
    retriever = Retriever(sources, quotas).fit(data)
    test_users = split.test_users
    if max_users is not None and len(test_users) > max_users:
        rng = np.random.default_rng(seed)
        test_users = np.sort(rng.choice(test_users, max_users, replace=False))
    query = _query(data, split.train, test_users)
    test = split.test[test_users]
    kmax = max(ks)
    per_source: dict[str, list[Candidates]] = {name: [] for name in retriever.sources_}
    for s in range(0, len(query), batch):
        sub = RetrievalQuery(
            query.user_ids[s : s + batch],
            query.histories[s : s + batch],
            query.recent[s : s + batch],
            query.segments[s : s + batch],
            query.now_ms,
        )
        for name, source in retriever.sources_.items():
            per_source[name] += source.retrieve(sub, kmax)
    results: dict[str, dict[str, float]] = {}
    for name, lists in per_source.items():
        results[name] = {f"recall@{k}": _recall([c.items[:k] for c in lists], test) for k in ks}
    results["merged"] = {}
    for k in ks:
        q = retriever.user_quotas(query, k)
        cut = {
            name: [
                c.items[: min(k, math.ceil(retriever.overfetch * qu[name]))]
                for c, qu in zip(lists, q, strict=True)
            ]
            for name, lists in per_source.items()
        }
        trimmed = {
            name: [_head(c, len(x)) for c, x in zip(per_source[name], cut[name], strict=True)] for name in cut
        }
        merged = merge(trimmed, q, k)
        results["merged"][f"recall@{k}"] = _recall([mc.items for mc in merged], test)
    return {
        "dataset": dataset,
        "protocol": protocol,
        "ratio": ratio,
        "n_users": len(test_users),
        "n_items": m,
        "seconds": round(time.perf_counter() - t0, 2),
        "results": results,
    }


def report_rows(report: dict[str, Any], digits: int = 4) -> list[dict[str, Any]]:
    """One flat row per source (``{"source": name, "recall@K": …}``, rounded), for printing a table."""
    return [
        {"source": name, **{key: round(value, digits) for key, value in res.items()}}
        for name, res in report["results"].items()
    ]


def _head(c: Candidates, n: int) -> Candidates:
    return Candidates(c.items[:n], c.scores[:n], c.reason[:n], c.anchor[:n])
