"""Retrieval evaluation: Recall@K of held-out items in each source's candidates and in the merged set.

The interactions are split with :func:`funnel.eval.splits.make_split` (``temporal`` by default:
what trending and new items are for). The sources are fitted on the training events only (the
catalogue and users tables whole), with ``now`` = the split's cut (or the last training event).
Each test user is then asked for candidates from their training history — recent items newest
first, segments from their attributes — as of ``now``. For every ``K`` a source's list is cut to
``K``, and the merged set is :class:`~funnel.retrieval.retriever.Retriever`'s merge with
``total = K``: by default weighted rank fusion (``merge_by="fusion"``) with weights learned on a
validation split of the training part only (the test split is never looked at).
``recall@K`` is the mean over test users of ``|hits| / |test items|``.

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

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from funnel.core.interactions import Interactions
from funnel.retrieval.quotas import history_query, retrieve_batched, split_data
from funnel.retrieval.retriever import Retriever
from funnel.retrieval.source import Candidates
from funnel.retrieval.sources.common import retrieval_data


def load_tables(path: str | Path, fmt: str) -> tuple[pa.Table, pa.Table | None, pa.Table | None]:
    """``(interactions, items, users)`` of a dataset read with ``import_dataset`` (missing kinds: None)."""
    from funnel.data.importers import import_dataset

    got: dict[str, list[pa.Table]] = {}
    import_dataset(path, fmt, sink=lambda kind, t: got.setdefault(kind, []).append(t), progress=False)
    tables = {kind: pa.concat_tables(ts) for kind, ts in got.items()}
    return tables["interactions"], tables.get("items"), tables.get("users")


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
    quotas: Mapping[str, float] | str | None = "learn",
    max_users: int | None = None,
    batch: int = 1024,
    dataset: str = "dataset",
    merge_by: str = "fusion",
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
        quotas: the merge's quota weights; ``"learn"`` (default): learned by the Retriever on a
            validation split of the training part made with the same ``protocol``, ``ratio`` and
            ``seed`` (see :mod:`funnel.retrieval.quotas`); ``None``: the Retriever's defaults.
        max_users: evaluate a random sample of at most this many test users.
        batch: users per retrieval call.
        dataset: the name written in the report.
        merge_by: the Retriever's merge, ``"fusion"`` (default) or ``"quota"``.

    Returns:
        ``{"dataset", "protocol", "ratio", "n_users", "n_items", "seconds", "results": {source or
        "merged": {"recall@K": value}}}``.
    """
    t0 = time.perf_counter()
    full = retrieval_data(interactions, items, users)
    data, split = split_data(full, protocol, ratio, seed)
    m = full.interactions.n_items
    learn = {"protocol": protocol, "ratio": ratio, "seed": seed}
    retriever = Retriever(sources, quotas, learn=learn, merge_by=merge_by).fit(data)
    test_users = split.test_users
    if max_users is not None and len(test_users) > max_users:
        rng = np.random.default_rng(seed)
        test_users = np.sort(rng.choice(test_users, max_users, replace=False))
    query = history_query(data, test_users)
    test = split.test[test_users]
    depth = max(retriever.fetch_count(k, k) for k in ks)  # fusion asks for overfetch × K
    per_source = retrieve_batched(retriever.sources_, query, max(depth, *ks), batch)
    results: dict[str, dict[str, float]] = {}
    for name, lists in per_source.items():
        results[name] = {f"recall@{k}": _recall([c.items[:k] for c in lists], test) for k in ks}
    results["merged"] = {}
    for k in ks:
        q = retriever.user_quotas(query, k)
        trimmed = {
            name: [_head(c, retriever.fetch_count(qu[name], k)) for c, qu in zip(lists, q, strict=True)]
            for name, lists in per_source.items()
        }
        merged = retriever.combine(trimmed, q, k)
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
