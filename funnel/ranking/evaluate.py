"""Offline evaluation of the full pipeline beside the baselines, on the same split.

:func:`evaluate_pipeline` splits the events with one of the protocols of :mod:`funnel.eval.splits`,
fits a :class:`~funnel.ranking.model.RankingPipeline` on the training part only (it makes its own
time cut inside it), materialises the training events into an in-memory online store — the
serving path — and ranks for every test user from their training history as of the end of the
training data. The lists are scored with the same :func:`~funnel.eval.runner.score_lists` as the
baselines, so the rows of one report compare.

:func:`evaluate_source` does the same for one retrieval source used on its own as a model (the
two-tower model: a baseline the pipeline must beat, fitted on the same training part).

Example: ``funnel evaluate --data … --models ease,als,two_tower,pipeline`` (see ``funnel.cli``).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from funnel.core.interactions import Interactions
from funnel.eval.runner import score_lists
from funnel.eval.splits import Split
from funnel.features.materialize import materialize
from funnel.features.online.memory import MemoryOnlineStore
from funnel.features.serving import FeatureServer
from funnel.features.streaming import Catalog
from funnel.ranking.labels import PROTOCOL_SPLIT
from funnel.ranking.model import RankingPipeline, offline_store
from funnel.retrieval.quotas import history_query
from funnel.retrieval.source import RetrievalData, RetrievalQuery
from funnel.retrieval.sources.common import member, retrieval_data
from funnel.retrieval.sources.registry import make_source


def serving_features(data: RetrievalData, folder: str) -> FeatureServer:
    """A feature server over a memory store materialised from ``data``'s events (as of its end)."""
    store = MemoryOnlineStore()
    materialize(offline_store(data, folder), store, now=data.now_ms + 1, progress=False)
    return FeatureServer(store, Catalog.from_items(data.items))


def top_k(
    pipeline: RankingPipeline, query: RetrievalQuery, server: FeatureServer, k: int, batch: int = 256
) -> np.ndarray:
    """``int32 [n_users, k]`` ranked items per user of ``query`` (``-1`` pads short lists)."""
    out = np.full((len(query), k), -1, dtype=np.int32)
    for s in range(0, len(query), batch):
        for r, (m, _) in enumerate(pipeline.rank(query.batch(s, s + batch), server)):
            got = m.items[:k]
            out[s + r, : len(got)] = got
    return out


def train_part(
    inter: Interactions, split: Split, items: pa.Table | None = None, users: pa.Table | None = None
) -> RetrievalData:
    """The events of ``inter`` outside ``split``'s test pairs (and, for ``temporal``, up to its cut).

    Only catalogue rows of items in ``inter`` are used, so the item index space stays the split's.
    """
    m = inter.n_items
    te = split.test.tocoo()
    mask = ~member(inter.user_idx.astype(np.int64) * m + inter.item_idx, te.row.astype(np.int64) * m + te.col)
    if split.cut_timestamp is not None:
        mask &= inter.timestamp <= split.cut_timestamp
    train = inter.subset(mask)
    if items is not None:
        items = items.filter(pc.is_in(items.column("item_id"), value_set=inter.items.keys))
    data = retrieval_data(train, items, users)
    data.X = split.train
    return data


def evaluate_pipeline(
    inter: Interactions,
    split: Split,
    k: int,
    params: Mapping[str, Any] | None = None,
    items: pa.Table | None = None,
    users: pa.Table | None = None,
) -> dict[str, float]:
    """Fit the pipeline on the split's training events and score its top ``k`` for the test users.

    Unless ``params["labels"]["split"]`` says otherwise, the ranker's labels are made the way
    the protocol holds out its test items (:data:`~funnel.ranking.labels.PROTOCOL_SPLIT`).
    """
    t = time.perf_counter()
    train = train_part(inter, split, items, users)
    params = dict(params or {})
    params["labels"] = {"split": PROTOCOL_SPLIT[split.protocol], **params.get("labels", {})}
    pipeline = RankingPipeline(**params)
    with tempfile.TemporaryDirectory() as tmp:
        pipeline.fit(train, tmp)
        fit_seconds = time.perf_counter() - t
        server = serving_features(train, tmp + "/serving")
    users = split.test_users
    recs = top_k(pipeline, history_query(train, users), server, k)
    result = score_lists(recs, split, users, k)
    result["fit_seconds"] = fit_seconds
    return result


def evaluate_source(
    name: str,
    inter: Interactions,
    split: Split,
    k: int,
    params: Mapping[str, Any] | None = None,
    items: pa.Table | None = None,
    users: pa.Table | None = None,
    batch: int = 256,
) -> dict[str, float]:
    """Fit retrieval source ``name`` on the split's training events; score its top ``k`` (seen excluded)."""
    t = time.perf_counter()
    train = train_part(inter, split, items, users)
    source = make_source(name, **dict(params or {})).fit(train)
    fit_seconds = time.perf_counter() - t
    test_users = split.test_users
    query = history_query(train, test_users)
    recs = np.full((len(test_users), k), -1, dtype=np.int32)
    for s in range(0, len(query), batch):
        for r, cands in enumerate(source.retrieve(query.batch(s, s + batch), k)):
            got = cands.items[:k]
            recs[s + r, : len(got)] = got
    result = score_lists(recs, split, test_users, k)
    result["fit_seconds"] = fit_seconds
    return result
