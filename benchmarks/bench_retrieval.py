"""Retrieval latency: each source and the merged ``Retriever``, one user per request, single-threaded.

Run: ``python -m benchmarks.bench_retrieval [--items 1000000 --users 500000 --interactions 3000000]
[--index hnsw] [--queries 300] [--quick]``

The catalogue is a fast NumPy world (not ``funnel.data.synthetic``, whose 1M-item generation takes
minutes): items in ``--clusters`` taste clusters with skewed popularity inside each, users with one
or two favourite clusters (80 % of their events), event times over 60 days, publish dates over two
years (3 % in the last 30 days), users with a country and an age bucket. The sources are fitted with
both cores (ALS 32 factors, 3 iterations; item-kNN 50 neighbours; ALS items in FAISS HNSW through
``make_index``, ``--index exact`` for brute force); then BLAS and FAISS are limited to one thread and
each of ``--queries`` warm users (and as many cold ones) is retrieved alone: every source asked for
what the Retriever asks it (its overfetched quota of 1000), then the whole ``Retriever.retrieve``
(sources in sequence + merge). Median and p99 in milliseconds go to ``benchmarks/results/retrieval.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

import numpy as np
import pyarrow as pa
from threadpoolctl import threadpool_limits

from benchmarks.common import machine_meta, print_table, write_results
from funnel.core.idmap import IdMap
from funnel.core.interactions import Interactions
from funnel.core.schema import EVENT_CODE, ITEMS, USERS
from funnel.retrieval.retriever import Retriever
from funnel.retrieval.source import RetrievalData, RetrievalQuery
from funnel.retrieval.sources.common import aligned_table
from funnel.retrieval.sources.registry import make_source

DAY = 86_400_000
END = 1_767_225_600_000
COUNTRIES = ("US", "GB", "DE", "FR", "BR", "IN", "JP")
AGES = ("13-17", "18-24", "25-34", "35-44", "45-54", "55+")


def world(n_items: int, n_users: int, n_events: int, n_clusters: int, seed: int) -> RetrievalData:
    """A clustered implicit-feedback world as ``RetrievalData`` (built without per-row Python)."""
    rng = np.random.default_rng(seed)
    per = max(1, n_items // n_clusters)
    fav = rng.integers(0, n_clusters, size=(n_users, 2))
    user = np.minimum((n_users * rng.random(n_events) ** 1.5).astype(np.int64), n_users - 1)
    cluster = np.where(
        rng.random(n_events) < 0.8,
        fav[user, rng.integers(0, 2, n_events)],
        rng.integers(0, n_clusters, n_events),
    )
    item = np.minimum(cluster * per + (per * rng.random(n_events) ** 3).astype(np.int64), n_items - 1)
    ts = END - (60 * DAY * rng.random(n_events)).astype(np.int64)
    users = IdMap(pa.array([f"u{u:07d}" for u in range(n_users)]))
    items = IdMap(pa.array([f"i{i:07d}" for i in range(n_items)]))
    inter = Interactions(
        users,
        items,
        user.astype(np.int32),
        item.astype(np.int32),
        ts,
        np.full(n_events, EVENT_CODE["click"], np.int8),
        np.full(n_events, np.nan, np.float32),
    )
    fresh = rng.random(n_items) < 0.03
    published = np.where(
        fresh, END - (30 * DAY * rng.random(n_items)), END - (730 * DAY * rng.random(n_items))
    )
    items_t = pa.table(
        {
            "item_id": items.keys,
            "published_at": pa.array(published.astype(np.int64)).cast(pa.timestamp("ms", "UTC")),
            "status": pa.array(["listed"] * n_items),
        }
    )
    country, age = rng.integers(0, len(COUNTRIES), n_users), rng.integers(0, len(AGES), n_users)
    attrs = [
        json.dumps({"country": COUNTRIES[c], "age_bucket": AGES[a]})
        for c, a in zip(country, age, strict=True)
    ]
    users_t = pa.table({"user_id": users.keys, "attributes": pa.array(attrs)})
    return RetrievalData(
        inter,
        inter.to_csr(),
        aligned_table(items.keys, items_t, ITEMS, "item_id"),
        aligned_table(users.keys, users_t, USERS, "user_id"),
        END,
    )


def query(data: RetrievalData, u: int, cold: bool) -> RetrievalQuery:
    """A one-user request: the user's history (most recent last in ``indices`` order) or none."""
    row = data.X[[u]]
    if cold:
        row = row[:, :] * 0
        row.eliminate_zeros()
    recent = row.indices[::-1].astype(np.int64)
    attrs = json.loads(data.users.column("attributes")[u].as_py())
    return RetrievalQuery([f"u{u}"], row, [recent], [attrs], END)


def stats(
    name: str, kind: str, seconds: list[float], cpu: list[float], k: int | None = None
) -> dict[str, Any]:
    ms, cpu_ms = np.asarray(seconds) * 1000, np.asarray(cpu) * 1000
    return {
        "stage": name,
        "users": kind,
        "k": k,
        "median_ms": round(float(np.median(ms)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "cpu_median_ms": round(float(np.median(cpu_ms)), 3),
        "requests": len(ms),
    }


def ann_recall(als: Any, data: RetrievalData, users: np.ndarray, k: int) -> float:
    """Recall of the ALS source's candidates against exact inner-product search, same users and ``k``."""
    from funnel.ann.exact import ExactIndex

    H = data.X[users]
    n = len(users)
    exclude = [H.indices[H.indptr[u] : H.indptr[u + 1]].astype(np.int64) for u in range(n)]
    exact = ExactIndex(als.item_factors_.shape[1])
    exact.add(np.arange(als.n_items_, dtype=np.int64), als.item_factors_)
    truth, _ = exact.search(als.user_vectors(H), k, exclude)
    q = RetrievalQuery([""] * n, H, [np.empty(0, np.int64)] * n, [{}] * n, END)
    got = als.retrieve(q, k)
    return float(np.mean([np.isin(t[t >= 0], c.items).mean() for t, c in zip(truth, got, strict=True)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=500_000)
    parser.add_argument("--interactions", type=int, default=3_000_000)
    parser.add_argument("--clusters", type=int, default=200)
    parser.add_argument("--index", default="hnsw", choices=["hnsw", "exact"])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke-test size (20k items, 20 queries)")
    args = parser.parse_args()
    if args.quick:
        args.items, args.users, args.interactions, args.queries = 20_000, 10_000, 100_000, 20
    t0 = time.perf_counter()
    data = world(args.items, args.users, args.interactions, args.clusters, args.seed)
    build_s = time.perf_counter() - t0
    index_params = {"M": 16, "ef_construction": 40, "ef_search": 600} if args.index == "hnsw" else {}
    sources = {
        "als": {"factors": 32, "iterations": 3, "index": args.index, "index_params": index_params},
        "item_knn": {"k_neighbours": 50},
        "trending": {},
        "new_items": {},
        "editorial": {"curated": [f"i{i:07d}" for i in range(0, 5000, 100)], "sponsored": ["i0000007"]},
    }
    retriever = Retriever(sources)
    retriever.sources_ = {}
    fit_s: dict[str, float] = {}
    for name, params in sources.items():
        t = time.perf_counter()
        retriever.sources_[name] = make_source(name, **params).fit(data)
        fit_s[name] = round(time.perf_counter() - t, 1)
    rng = np.random.default_rng(args.seed + 1)
    active = np.flatnonzero(np.diff(data.X.indptr))
    users = rng.choice(active, min(args.queries, len(active)), replace=False)
    rows: list[dict[str, Any]] = []
    with threadpool_limits(1):
        try:
            from funnel.ann.factory import set_omp_threads

            set_omp_threads(1)
        except ImportError:
            pass
        for kind in ("warm", "cold"):
            times: dict[str, list[float]] = {name: [] for name in [*sources, "merged"]}
            times["merge"] = []
            cpu: dict[str, list[float]] = {name: [] for name in times}
            ks: dict[str, int] = {}
            for u in users:
                q = query(data, int(u), kind == "cold")
                quotas = retriever.user_quotas(q)[0]
                for name, source in retriever.sources_.items():
                    k = min(retriever.total, math.ceil(retriever.overfetch * quotas[name]))
                    ks[name] = k
                    if k == 0:
                        continue
                    t, c = time.perf_counter(), time.thread_time()
                    source.retrieve(q, k)
                    times[name].append(time.perf_counter() - t)
                    cpu[name].append(time.thread_time() - c)
                t, c = time.perf_counter(), time.thread_time()
                merged = retriever.retrieve(q)
                times["merged"].append(time.perf_counter() - t)
                cpu["merged"].append(time.thread_time() - c)
                times["merge"].append(retriever.last_seconds_["merge"])
                cpu["merge"].append(retriever.last_seconds_["merge"])  # wall: a slice of one request
                assert len(merged[0]) > 0
            if kind == "warm":
                ks_warm = ks["als"]
            for name, ts in times.items():
                if ts:
                    rows.append(stats(name, kind, ts, cpu[name], ks.get(name, retriever.total)))
    print_table(rows)
    recall = ann_recall(retriever.sources_["als"], data, users, ks_warm)
    print(f"ALS {args.index} recall@{ks_warm} against exact search: {recall:.4f}")
    meta = {
        **machine_meta(),
        "items": args.items,
        "users": args.users,
        "interactions": args.interactions,
        "index": args.index,
        "index_params": index_params,
        "world_build_s": round(build_s, 1),
        "als_ann_recall_vs_exact": round(recall, 4),
        "fit_s": fit_s,
        "total": retriever.total,
        "threads": 1,
    }
    print(json.dumps({"fit_s": fit_s, "world_build_s": round(build_s, 1)}))
    print(f"wrote {write_results('retrieval', rows, meta)}")


if __name__ == "__main__":
    main()
