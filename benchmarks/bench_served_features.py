"""Served-feature logging: what it costs a request, sampled and not, and what the writer thread does.

Run: ``python -m benchmarks.bench_served_features [--items 20000 --users 5000 --interactions 200000]
[--requests 400] [--quick]``

1. **Data.** The trained data directory of :func:`benchmarks.bench_api.build` for these parameters
   (cached under ``benchmarks/.cache/``), served read-only: the logs go to a temporary folder.
2. **Per call.** On the feature vectors of real requests (one user, the merged candidates the
   ranker scores): ``ServedFeatureLog.maybe_log`` for a request id not sampled (one CRC32) and for a
   sampled one (queued for the background writer: a reference, no copy), median ns over many calls;
   and the writer's cost per vector (JSON serialisation and the append), which the request does not
   pay but which holds the GIL while it runs (``writer_call_cpu_ms_*``: CPU time of its single JSON
   calls, p99 and max: how long a request thread may wait for the GIL because of it).
3. **Per request.** ``Pipeline.recommend`` for one user with a request id, one request at a time
   over the same user mix, the served-feature log at sample rate 0 (off), 0.01 (the default) and
   1.0 (every request: the worst case, the writer busiest): wall and CPU median / p95 / p99 ms,
   rates interleaved round by round so a shared machine's load affects them alike. The writer
   thread's work lands in whichever request it overlaps, so it is spread over all three columns
   (CPU is the process's); its own cost is part 2's.

Results: ``benchmarks/results/served_features.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench_api import build, user_mix
from benchmarks.common import machine_meta, print_table, write_results

RATES = (0.0, 0.01, 1.0)
LIMIT = 10


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def vectors(engine: Any, users: list[str], n: int) -> list[Any]:
    """The feature vectors ``n`` requests of ``users`` score (read as the ranker reads them)."""
    from funnel.features.serving import FeatureServer

    pipeline = engine.pipeline()
    out: list[Any] = []
    read = FeatureServer.read

    def keep(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        fv = read(self, *args, **kwargs)
        out.append(fv)
        return fv

    FeatureServer.read = keep  # type: ignore[method-assign]
    try:
        for user in users[:n]:
            pipeline.recommend([user], LIMIT)
    finally:
        FeatureServer.read = read  # type: ignore[method-assign]
    return [fv for fv in out if fv.item_ids]


def bench_calls(fvs: list[Any], folder: Path) -> dict[str, Any]:
    """ns per ``maybe_log`` call, not sampled and sampled (queued); the writer's ms per vector."""
    from funnel.features.serving import ServedFeatureLog

    off = ServedFeatureLog(folder / "off", 0.01, background=True)
    ids = [f"never-{k}" for k in range(200_000)]
    ids = [r for r in ids if not off.sampled(r)][:20_000]
    t0 = time.perf_counter_ns()
    for k, rid in enumerate(ids):
        off.maybe_log(rid, fvs[k % len(fvs)])
    not_sampled_ns = (time.perf_counter_ns() - t0) / len(ids)
    on = ServedFeatureLog(
        folder / "on", 1.0, background=True, flush_interval_s=3600.0, max_pending_rows=10**9
    )
    times = []
    for k in range(2_000):
        t = time.perf_counter_ns()
        on.maybe_log(f"r{k}", fvs[k % len(fvs)])
        times.append(time.perf_counter_ns() - t)
    on.close()
    lines = [ServedFeatureLog._line(f"r{k}", fv) for k, fv in enumerate(fvs)]
    t1 = time.perf_counter()
    for k, fv in enumerate(fvs):
        ServedFeatureLog._line(f"r{k}", fv)
    serialise_ms = (time.perf_counter() - t1) * 1e3 / len(fvs)
    calls = []  # CPU ms of each json call of the writer: how long it holds the GIL at once
    for fv in fvs:
        for part in [fv.item_ids, *(v.tolist() for v in fv.items.values())]:
            t = time.thread_time()
            json.dumps(part)
            calls.append((time.thread_time() - t) * 1e3)
    sync = ServedFeatureLog(folder / "sync", 1.0)
    t2 = time.perf_counter()
    sync._write(lines)
    append_ms = (time.perf_counter() - t2) * 1e3 / len(fvs)
    rows = [len(fv.item_ids) for fv in fvs]
    size = sum(len(text.encode()) for _, text in lines) / len(lines)
    return {
        "vectors": len(fvs),
        "rows_per_vector": round(statistics.mean(rows), 1),
        "not_sampled_ns": round(not_sampled_ns, 1),
        "sampled_enqueue_ns_p50": float(np.median(times)),
        "sampled_enqueue_ns_p99": _pct(times, 99),
        "writer_serialise_ms_per_vector": round(serialise_ms, 3),
        "writer_append_ms_per_vector": round(append_ms, 4),
        "writer_call_cpu_ms_p99": round(_pct(calls, 99), 3),
        "writer_call_cpu_ms_max": round(max(calls), 3),
        "bytes_per_vector": round(size),
    }


def bench_requests(data: Path, users: list[str], requests: int, folder: Path) -> list[dict[str, Any]]:
    """Per sample rate: wall and CPU ms of ``Pipeline.recommend`` with a request id (interleaved)."""
    from funnel.engine import Engine
    from funnel.features.serving import FeatureServer, ServedFeatureLog

    engine = Engine(data, served_feature_sample=0.0)  # the data directory stays untouched
    pipeline = engine.pipeline()
    ranking = pipeline.ranking
    assert ranking is not None, "the data directory has no ranking pipeline"
    logs = {rate: ServedFeatureLog(folder / f"rate-{rate}", rate, background=True) for rate in RATES}
    # one FeatureServer per rate over the same store: what RankingServer builds with that log
    servers = {
        rate: FeatureServer(ranking.store, ranking.catalog, served_log=log) for rate, log in logs.items()
    }
    walls: dict[float, list[float]] = {r: [] for r in RATES}
    cpus: dict[float, list[float]] = {r: [] for r in RATES}
    for user in users[:20]:  # warm-up
        pipeline.recommend([user], LIMIT)
    for k, user in enumerate(users[:requests]):
        for rate in RATES[k % len(RATES) :] + RATES[: k % len(RATES)]:  # rotate the order
            ranking.features = servers[rate]
            rid = uuid.uuid4().hex
            t, c = time.perf_counter(), time.process_time()
            pipeline.recommend([user], LIMIT, request_ids=[rid])
            walls[rate].append((time.perf_counter() - t) * 1e3)
            cpus[rate].append((time.process_time() - c) * 1e3)
    rows = []
    for rate, log in logs.items():
        log.close()
        rows.append(
            {
                "sample_rate": rate,
                "requests": len(walls[rate]),
                "logged": log.logged,
                "dropped": log.dropped,
                "wall_ms_p50": round(float(np.median(walls[rate])), 3),
                "wall_ms_p95": round(_pct(walls[rate], 95), 3),
                "wall_ms_p99": round(_pct(walls[rate], 99), 3),
                "wall_ms_mean": round(statistics.mean(walls[rate]), 3),
                "cpu_ms_p50": round(float(np.median(cpus[rate])), 3),
                "cpu_ms_mean": round(statistics.mean(cpus[rate]), 3),
            }
        )
    engine.close()
    return rows


def main() -> None:
    """Build or reuse the data, run both parts, print and write the results."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=20_000)
    ap.add_argument("--users", type=int, default=5_000)
    ap.add_argument("--interactions", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--requests", type=int, default=400, help="per sample rate")
    ap.add_argument("--rebuild", action="store_true", help="ignore the cached data directory")
    ap.add_argument("--quick", action="store_true", help="smoke-test size (numbers not reported)")
    args = ap.parse_args()
    if args.quick:
        args.items, args.users, args.interactions, args.requests = 300, 200, 5_000, 20
    folder, info = build(args.items, args.users, args.interactions, args.seed, args.rebuild)
    users = user_mix(folder, max(args.requests, 100) + 20, 0.2, args.seed)
    from funnel.engine import Engine

    with tempfile.TemporaryDirectory(prefix="funnel-bench-served-") as tmp:
        engine = Engine(folder / "data", served_feature_sample=0.0)
        fvs = vectors(engine, users, min(100, len(users)))
        engine.close()
        calls = bench_calls(fvs, Path(tmp))
        rows = bench_requests(folder / "data", users, args.requests, Path(tmp))
    print_table([calls])
    print_table(rows)
    meta = {**machine_meta(), "data": info, "calls": calls, "quick": args.quick}
    if not args.quick:
        print(f"wrote {write_results('served_features', rows, meta)}")


if __name__ == "__main__":
    main()
