"""Two-tower serving latency on CPU, single-threaded: the user tower, the ANN search, the whole source.

Run: ``python -m benchmarks.bench_two_tower [--items 1000000 --users 100000 --interactions 500000]
[--index hnsw] [--k 1000] [--queries 300] [--quick]``

The issue asks that serving-time user-tower inference need no GPU and take about a millisecond.
The world is :func:`benchmarks.bench_retrieval.world` (clustered items with skewed popularity,
users with segments) with a title and a category per item (the item tower's content features; the
title's words are drawn from the item's cluster's vocabulary). ``two_tower`` is fitted on it with
one thread for ``--epochs`` (latency does not depend on how well it is trained) and every item's
vector goes into the ANN index (FAISS HNSW by default, ``--index exact`` for brute force). Then
torch, BLAS and FAISS are limited to one thread and each of ``--queries`` users (warm: their last
20 items as recent history plus segments; cold: segments only) is served alone, timing

* ``user_tower``: ``TwoTowerSource.user_vectors`` for one user (history lookup + one tower pass),
* ``ann_search``: the index search for ``--k`` items with the user's history excluded,
* ``retrieve``: the whole ``TwoTowerSource.retrieve`` for ``--k`` items (tower + search + lists).

Median and p99 wall time and median CPU time (``thread_time``) in milliseconds go to
``benchmarks/results/two_tower.json``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from threadpoolctl import threadpool_limits

from benchmarks.bench_retrieval import query, stats, world
from benchmarks.common import machine_meta, print_table, write_results
from funnel.retrieval.source import RetrievalData
from funnel.retrieval.sources.two_tower import TwoTowerSource


def with_metadata(data: RetrievalData, n_clusters: int, seed: int) -> RetrievalData:
    """``data`` with a title (3 words of the item's cluster's 50) and a category per catalogue item."""
    n = data.items.num_rows
    rng = np.random.default_rng(seed + 2)
    cluster = np.minimum(np.arange(n) // max(1, n // n_clusters), n_clusters - 1)
    words = cluster[:, None] * 50 + rng.integers(0, 50, (n, 3))
    titles = [f"w{a} w{b} w{c}" for a, b, c in words.tolist()]
    cats = pa.array([[f"c{c}"] for c in cluster.tolist()], pa.list_(pa.string()))
    items = data.items
    for name, column in (("title", pa.array(titles)), ("categories", cats)):
        at = items.schema.get_field_index(name)
        items = items.set_column(at, name, column) if at >= 0 else items.append_column(name, column)
    return RetrievalData(data.interactions, data.X, items, data.users, data.now_ms)


def timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """``(wall seconds, CPU seconds of this thread)`` of one call of ``fn``."""
    t, c = time.perf_counter(), time.thread_time()
    fn()
    return time.perf_counter() - t, time.thread_time() - c


def single_thread() -> None:
    """Torch, BLAS and FAISS on one thread (the serving setting measured)."""
    torch.set_num_threads(1)
    try:
        from funnel.ann.faiss_index import set_omp_threads

        set_omp_threads(1)
    except ImportError:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--interactions", type=int, default=500_000)
    parser.add_argument("--clusters", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--index", default="hnsw", choices=["hnsw", "exact"])
    parser.add_argument("--k", type=int, default=1000, help="candidates retrieved per request")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke-test size (5k items, 10 queries)")
    args = parser.parse_args()
    if args.quick:
        args.items, args.users, args.interactions, args.queries = 5_000, 2_000, 20_000, 10
    t0 = time.perf_counter()
    data = world(args.items, args.users, args.interactions, args.clusters, args.seed)
    data = with_metadata(data, args.clusters, args.seed)
    build_s = time.perf_counter() - t0
    index_params = {"M": 16, "ef_construction": 40, "ef_search": 600} if args.index == "hnsw" else {}
    source = TwoTowerSource(epochs=args.epochs, embedder="tfidf", index=args.index, index_params=index_params)
    t = time.perf_counter()
    source.fit(data)
    fit_s = time.perf_counter() - t
    rng = np.random.default_rng(args.seed + 1)
    active = np.flatnonzero(np.diff(data.X.indptr))
    users = rng.choice(active, min(args.queries, len(active)), replace=False)
    rows: list[dict[str, Any]] = []
    with threadpool_limits(1):
        single_thread()
        for kind in ("warm", "cold"):
            times: dict[str, list[float]] = {"user_tower": [], "ann_search": [], "retrieve": []}
            cpu: dict[str, list[float]] = {name: [] for name in times}
            for u in users:
                q = query(data, int(u), kind == "cold")
                q.recent[0] = q.recent[0][: source.max_history]
                vec = source.user_vectors(q)  # warm-up, and the vector the search is timed with
                exclude = [np.union1d(q.histories.indices, q.recent[0]).astype(np.int64)]
                assert source.index_ is not None
                for name, fn in (
                    ("user_tower", lambda q=q: source.user_vectors(q)),
                    ("ann_search", lambda v=vec, e=exclude, i=source.index_: i.search(v, args.k, e)),
                    ("retrieve", lambda q=q: source.retrieve(q, args.k)),
                ):
                    wall, c = timed(fn)
                    times[name].append(wall)
                    cpu[name].append(c)
                assert len(source.retrieve(q, args.k)[0]) > 0
            rows += [stats(name, kind, times[name], cpu[name], args.k) for name in times]
    print_table(rows)
    meta = {
        **machine_meta(),
        "items": args.items,
        "users": args.users,
        "interactions": args.interactions,
        "epochs": args.epochs,
        "index": args.index,
        "index_params": index_params,
        "dim": source.dim,
        "max_history": source.max_history,
        "world_build_s": round(build_s, 1),
        "fit_s": round(fit_s, 1),
        "threads": 1,
        "torch": torch.__version__,
    }
    print(f"world {build_s:.1f}s, fit {fit_s:.1f}s")
    print(f"wrote {write_results('two_tower', rows, meta)}")


if __name__ == "__main__":
    main()
