"""ANN indexes vs exact search: build time, single-thread latency, recall@k, memory, remove.

Run: ``python -m benchmarks.bench_ann [--n 1000000 --dim 64 --queries 1000]`` (``--quick``: seconds)

Data: ``n`` synthetic *clustered* vectors — ``clusters`` gaussian centres (N(0, 1) per dimension),
each point a centre plus N(0, ``spread``²) noise, then **L2-normalised** (so inner product is
cosine). Queries are drawn the same way (fresh points, not index members). Search is timed with
one thread (FAISS OpenMP and NumPy BLAS both limited to 1) in batches of ``--batch`` queries and
reported per query (median over batches) in wall time and in the thread's CPU time (the machine
may be shared), plus the median latency of one-query calls. Builds use ``--build-threads``.
Recall@k is measured against the exact top-k of the same run; ``x exact`` is the exact batched
ms/query divided by the row's (``x exact CPU`` the same in CPU time). Last, ``--remove-frac`` of
the items are removed from every index and every query is searched again: ``removed returned``
must be 0 (the run fails otherwise). Results go to ``benchmarks/results/ann.json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from benchmarks.common import machine_meta, print_table, write_results
from funnel.ann.factory import make_index, set_omp_threads

QUICK = {"n": 5000, "dim": 16, "queries": 50, "clusters": 20, "nlist": 32, "pq_m": 8, "max_train": 5000}
"""Defaults ``--quick`` switches to (smoke-test size, seconds; explicit arguments still win)."""


def clustered(n: int, dim: int, clusters: int, spread: float, seed: int) -> np.ndarray:
    """``n`` normalised float32 points around ``clusters`` fixed gaussian centres (built in chunks)."""
    centres = np.random.default_rng(12345).normal(size=(clusters, dim)).astype(np.float32)
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, 200_000):
        e = min(n, s + 200_000)
        x = centres[rng.integers(0, clusters, e - s)] + spread * rng.standard_normal((e - s, dim), np.float32)
        out[s:e] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def timed_search(index: Any, queries: np.ndarray, k: int, batch: int, singles: int) -> dict[str, Any]:
    """Single-thread search of all queries in batches; median ms/query, 1-query median, results."""
    per_query, cpu, ids = [], [], []
    with threadpool_limits(1):
        set_omp_threads(1)
        for s in range(0, len(queries), batch):
            t, c = time.perf_counter(), time.thread_time()
            found, _ = index.search(queries[s : s + batch], k)
            per_query.append((time.perf_counter() - t) * 1000 / len(found))
            cpu.append((time.thread_time() - c) * 1000 / len(found))
            ids.append(found)
        one = []
        for q in queries[:singles]:
            t = time.perf_counter()
            index.search(q[None, :], k)
            one.append((time.perf_counter() - t) * 1000)
    med = statistics.median
    return {"ms": med(per_query), "cpu": med(cpu), "ms1": med(one), "ids": np.vstack(ids)}


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each query's true top-k found."""
    hits = [np.intersect1d(f, t).size / t.size for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits))


def build(kind: str, dim: int, threads: int, data: np.ndarray, ids: np.ndarray, **params: Any) -> Any:
    """Make and fill an index with ``threads`` threads; returns (index, seconds)."""
    set_omp_threads(threads)
    with threadpool_limits(threads):
        index = make_index(kind, dim, **params)
        t = time.perf_counter()
        index.add(ids, data)
        return index, time.perf_counter() - t


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; non-zero exit when a removed item came back."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--clusters", type=int, default=1000)
    p.add_argument("--spread", type=float, default=1.0)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--singles", type=int, default=50, help="one-query calls timed per index")
    p.add_argument("--build-threads", type=int, default=2)
    p.add_argument("--hnsw-m", type=int, default=32)
    p.add_argument("--ef-construction", type=int, default=80)
    p.add_argument("--ef-search", default="64,128,256,512", help="comma-separated efSearch values")
    p.add_argument("--nlist", type=int, default=1024)
    p.add_argument("--nprobe", default="16,64", help="comma-separated nprobe values")
    p.add_argument("--pq-m", type=int, default=32)
    p.add_argument("--max-train", type=int, default=100_000)
    p.add_argument("--remove-frac", type=float, default=0.1)
    p.add_argument("--quick", action="store_true", help=f"smoke-test sizes (seconds): {QUICK}")
    argv = sys.argv[1:] if argv is None else argv
    if "--quick" in argv:
        p.set_defaults(**QUICK)
    a = p.parse_args(argv)
    meta = machine_meta() | {"args": vars(a), "data": "clustered gaussian, L2-normalised", "metric": "IP"}
    started = time.perf_counter()
    data = clustered(a.n, a.dim, a.clusters, a.spread, seed=1)
    queries = clustered(a.queries, a.dim, a.clusters, a.spread, seed=2)
    ids = np.arange(a.n, dtype=np.int64)
    f32_mb = a.n * a.dim * 4 / 2**20
    rows: list[dict[str, Any]] = []

    def row(name: str, setting: str, index: Any, res: dict[str, Any], build_s: float | None) -> None:
        mem = index.memory_bytes() / 2**20
        rows.append(
            {
                "index": name,
                "setting": setting,
                "build_s": round(build_s, 1) if build_s is not None else None,
                "ms/query": round(res["ms"], 4),
                "CPU ms/query": round(res["cpu"], 4),
                "ms 1-query": round(res["ms1"], 4),
                f"recall@{a.k}": round(recall(res["ids"], truth), 4),
                "x exact": round(exact_ms / res["ms"], 1),
                "x exact CPU": round(exact_cpu / res["cpu"], 1),
                "x exact 1-query": round(exact_ms1 / res["ms1"], 1),
                "memory_MB": round(mem, 1),
                "mem/f32": round(mem / f32_mb, 3),
            }
        )
        print(f"  {name} {setting}: {rows[-1]}", flush=True)

    indexes: dict[str, Any] = {}
    exact, build_s = build("exact", a.dim, a.build_threads, data, ids)
    res = timed_search(exact, queries, a.k, a.batch, a.singles)
    truth, exact_ms, exact_cpu, exact_ms1 = res["ids"], res["ms"], res["cpu"], res["ms1"]
    row("exact", "blocked matmul", exact, res, build_s)
    indexes["exact"] = exact

    hnsw, build_s = build(
        "hnsw", a.dim, a.build_threads, data, ids, M=a.hnsw_m, ef_construction=a.ef_construction
    )
    for i, ef in enumerate(int(x) for x in a.ef_search.split(",")):
        hnsw.ef_search = ef
        res = timed_search(hnsw, queries, a.k, a.batch, a.singles)
        row(
            "hnsw",
            f"M={a.hnsw_m} efC={a.ef_construction} efSearch={ef}",
            hnsw,
            res,
            build_s if i == 0 else None,
        )
    indexes["hnsw"] = hnsw

    for kind, extra in (("ivf_sq8", {}), ("ivf_pq", {"m": a.pq_m})):
        ivf, build_s = build(
            kind, a.dim, a.build_threads, data, ids, nlist=a.nlist, max_train=a.max_train, **extra
        )
        for i, nprobe in enumerate(int(x) for x in a.nprobe.split(",")):
            ivf.nprobe = nprobe
            res = timed_search(ivf, queries, a.k, a.batch, a.singles)
            code = f" m={a.pq_m}" if kind == "ivf_pq" else ""
            row(
                kind,
                f"nlist={ivf._params()['nlist']}{code} nprobe={nprobe}",
                ivf,
                res,
                build_s if i == 0 else None,
            )
        indexes[kind] = ivf

    gone = np.random.default_rng(3).choice(ids, int(a.remove_frac * a.n), replace=False)
    removal = []
    set_omp_threads(a.build_threads)
    for name, index in indexes.items():
        before = index.memory_bytes()
        t = time.perf_counter()
        index.remove(gone)
        remove_s = time.perf_counter() - t
        with threadpool_limits(a.build_threads):
            found, _ = index.search(queries, a.k)
        if name == "exact":
            truth_after = found
        removal.append(
            {
                "index": name,
                "removed": len(gone),
                "remove_ms": round(remove_s * 1000, 1),
                "live_after": len(index),
                "removed returned": int(np.isin(found, gone).sum()),
                f"recall@{a.k} after": round(recall(found, truth_after), 4),
                "memory_MB before": round(before / 2**20, 1),
                "memory_MB after": round(index.memory_bytes() / 2**20, 1),
            }
        )
    meta["total_s"] = round(time.perf_counter() - started, 1)
    hnsw_ok = [r for r in rows if r["index"] == "hnsw" and r[f"recall@{a.k}"] >= 0.95]
    meta["target_hnsw_recall95_at_20x"] = any(r["x exact"] >= 20 for r in hnsw_ok)
    meta["target_hnsw_recall95_at_20x_cpu"] = any(r["x exact CPU"] >= 20 for r in hnsw_ok)
    meta["target_sq8_memory_le_30pct"] = all(r["mem/f32"] <= 0.30 for r in rows if r["index"] == "ivf_sq8")
    out = write_results("ann", rows + removal, meta)
    print_table(rows)
    print()
    print_table(removal)
    print("\ntargets:", {k: v for k, v in meta.items() if k.startswith("target_")})
    print(f"total {meta['total_s']} s; wrote {out}")
    return 1 if any(r["removed returned"] for r in removal) else 0


if __name__ == "__main__":
    sys.exit(main())
