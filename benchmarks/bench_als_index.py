"""The ALS source's ANN index on real-shaped factors: recall and single-query latency per setting.

``benchmarks/bench_ann`` sweeps the indexes on clustered synthetic vectors, which cluster far
better than ALS factors of a sparse catalogue. This one uses the factors ``bench_api`` serves
(its cached 1M-item world; built when missing): the users' folded-in vectors of ``--users``
known users, ``k`` as the retriever asks the ``als`` source for it, seen items excluded, one
query a call on one thread (as a request does). Recall is against the exact top ``k`` of the
same index input (:func:`~funnel.retrieval.sources.als_source.mips_augment`); the rounds are
interleaved so a noisy machine hits every setting alike.

Run: ``python -m benchmarks.bench_als_index`` (``--quick`` for the smoke-test world).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from benchmarks.bench_api import build
from benchmarks.common import machine_meta, print_table, write_results

SETTINGS: list[tuple[str, dict[str, Any]]] = [
    ("ivf_sq8", {"nlist": 1024, "nprobe": 128}),
    ("ivf_sq8", {"nlist": 1024, "nprobe": 256}),
    ("ivf_pq_fs", {"nlist": 1024, "nprobe": 128, "refine_factor": 4}),
    ("ivf_pq_fs", {"nlist": 1024, "nprobe": 256, "refine_factor": 2}),
    ("ivf_pq_fs", {"nlist": 1024, "nprobe": 256, "refine_factor": 4}),
]


def queries(folder, n_users: int) -> tuple[Any, np.ndarray, list[np.ndarray], int]:
    """The served ALS source, ``n_users`` folded-in query vectors, their seen items, and ``k``."""
    from funnel.engine import Engine
    from funnel.retrieval.sources.als_source import ALSSource

    engine = Engine(folder / "data")
    pipeline = engine.pipeline()
    retriever = pipeline.ranking.pipeline.retriever_
    source = next(s for s in retriever.sources_.values() if isinstance(s, ALSSource))
    users = (folder / "known_users.txt").read_text().split()[:n_users]
    asked: list[int] = []
    retrieve = source.retrieve
    source.retrieve = lambda query, k: asked.append(k) or retrieve(query, k)  # type: ignore[method-assign]
    engine.recommend(users[0], k=10)  # k: what the serving retriever asks the source for
    source.retrieve = retrieve  # type: ignore[method-assign]
    k = asked[0]
    H = pipeline.history_rows(users)
    H = H[np.flatnonzero(np.diff(H.indptr))]
    vectors = source.user_vectors(H)
    vectors = np.hstack([vectors, np.zeros((len(vectors), 1), np.float32)])  # mips_augment's query side
    seen = [H.indices[H.indptr[r] : H.indptr[r + 1]].astype(np.int64) for r in range(H.shape[0])]
    return source, vectors, seen, k


def main() -> None:
    """Build the indexes from the served factors; time and score every setting; write ``als_index.json``."""
    from funnel.ann.factory import make_index, set_omp_threads
    from funnel.retrieval.sources.als_source import mips_augment

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="smoke-test world (numbers not reported)")
    a = ap.parse_args()
    size = (3_000, 600, 30_000) if a.quick else (1_000_000, 100_000, 2_000_000)
    folder, info = build(*size, 0, False)
    set_omp_threads(1)
    source, Q, seen, k = queries(folder, a.users)
    F = source.item_factors_
    ids = np.flatnonzero(np.any(F != 0, axis=1) & source.listed_)
    X = np.ascontiguousarray(mips_augment(F)[ids], dtype=np.float32)
    exact = make_index("exact", X.shape[1])
    exact.add(ids, X)
    truth, _ = exact.search(Q, k, seen)
    built = []
    for kind, params in SETTINGS:
        t = time.perf_counter()
        index = make_index(kind, X.shape[1], **params)
        index.add(ids, X)
        built.append((kind, params, index, time.perf_counter() - t))
    times: list[list[float]] = [[] for _ in built]
    found: list[np.ndarray | None] = [None] * len(built)
    for _ in range(a.rounds):
        for j, (_, _, index, _) in enumerate(built):
            got = []
            for q in range(len(Q)):
                t = time.perf_counter()
                got.append(index.search(Q[q : q + 1], k, [seen[q]])[0][0])
                times[j].append(time.perf_counter() - t)
            found[j] = np.vstack(got)
    ref = float(np.median(times[0]))
    rows = []
    for j, (kind, params, index, build_s) in enumerate(built):
        pairs = zip(found[j], truth, strict=True)
        hits = [len(np.intersect1d(f[f >= 0], t[t >= 0])) / max(1, (t >= 0).sum()) for f, t in pairs]
        med = float(np.median(times[j]))
        rows.append({
            "index": kind, "params": params, "k": k, f"recall@{k}": round(float(np.mean(hits)), 4),
            "p50_ms": round(med * 1e3, 3), "x first row": round(ref / med, 2),
            "build_s": round(build_s, 1), "memory_MB": round(index.memory_bytes() / 2**20, 1),
        })  # fmt: skip
    meta = machine_meta()
    meta.update(data=info, indexed_items=len(ids), dim=int(X.shape[1]), users=len(Q), rounds=a.rounds)
    print_table(rows)
    if not a.quick:
        print(f"results: {write_results('als_index', rows, meta)}")


if __name__ == "__main__":
    main()
