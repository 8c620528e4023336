"""Feature store: streaming update throughput and online read latency (1 user + 1000 items).

Run: ``python -m benchmarks.bench_features [--events 100000] [--reads 50] [--redis-events 20000]``

A synthetic stream (interactions and impressions in time order) goes through the
``StreamingUpdater`` (event log -> increments -> ``store.apply`` -> commit) into the memory store,
and into the Redis store when a server answers at 127.0.0.1:6379 (a throw-away key prefix, deleted
afterwards). The stale buckets of the user's keys are then pruned (the consumer's upkeep,
``streaming.prune``; item bucket keys expire), and ``FeatureServer.read`` builds the vectors of
the most active user and 1000 items at the end of the stream (of the events that backend
streamed): median and p95 of ``--reads`` calls, with the catalogue in process (the serving
default) and with item metadata read from the store, and once more with a 500-event streaming
batch (fresh event ids) applied before every read, untimed, so the stores' and the server's caches
see writes between reads as they do live. The machine may be shared: CPU time is reported beside
wall time. Results: ``benchmarks/results/features.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable

import numpy as np

from benchmarks.common import machine_meta, print_table, write_results
from funnel.core.schema import Interaction
from funnel.data.synthetic import SyntheticConfig, event_stream, generate
from funnel.events.memory_log import MemoryEventLog
from funnel.features.definitions import FEATURE_VERSION
from funnel.features.online.memory import MemoryOnlineStore
from funnel.features.online.protocol import feature_key
from funnel.features.serving import FeatureServer
from funnel.features.streaming import Catalog, StreamingUpdater, prune

TARGETS = {
    ("stream", "memory"): 20_000,
    ("stream", "redis"): 5_000,
    ("read", "memory"): 2.0,
    ("read", "redis"): 5.0,
}


def make_stream(n_events: int, seed: int = 0):
    """``n_events`` synthetic events in time order, and the dataset they came from."""
    ds = generate(
        SyntheticConfig(n_users=2_000, n_items=3_000, n_interactions=int(n_events * 0.62), seed=seed)
    )
    return ds, event_stream(ds, limit=n_events)


def bench_stream(events: list, store, catalog: Catalog) -> dict:
    """Stream ``events`` into ``store``; events per second (wall and CPU)."""
    log = MemoryEventLog()
    log.append(events)
    updater = StreamingUpdater(log, store, catalog, batch_size=2_000)
    t0, c0 = time.perf_counter(), time.process_time()
    updater.run()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"events": len(events), "wall_s": wall, "cpu_s": cpu, "per_s": len(events) / wall}


def bench_read(
    store,
    catalog: Catalog | None,
    user: str,
    items: list[str],
    t: int,
    reads: int,
    between: Callable[[], object] | None = None,
) -> dict:
    """Median and p95 wall milliseconds of ``reads`` feature-vector reads, and the median CPU ms.

    ``between`` (untimed) runs before every timed read, e.g. a streaming batch.
    """
    server = FeatureServer(store, catalog)
    server.read(user, items, t)  # warm-up (fills the closed-bucket cache of this epoch)
    times, cpu = [], []
    for _ in range(reads):
        if between is not None:
            between()
        t0, c0 = time.perf_counter(), time.process_time()
        server.read(user, items, t)
        times.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.process_time() - c0) * 1e3)
    return {
        "median_ms": statistics.median(times),
        "p95_ms": float(np.percentile(times, 95)),
        "cpu_median_ms": statistics.median(cpu),
    }


def replay_batches(events: list, store, catalog: Catalog, size: int = 500) -> Callable[[], int]:
    """A callable streaming the next ``size`` of ``events`` again, under fresh event ids, into ``store``."""
    calls = [0]

    def step() -> int:
        n = calls[0] = calls[0] + 1
        start = (n * size) % max(1, len(events) - size)
        chunk = [
            dataclasses.replace(e, event_id=f"again-{n}-{k}") if type(e) is Interaction else e
            for k, e in enumerate(events[start : start + size])
        ]
        log = MemoryEventLog()
        log.append(chunk)
        return StreamingUpdater(log, store, catalog, log_name=f"again-{n}", batch_size=size).run()

    return step


def redis_store():
    """A Redis online store in a fresh namespace, or None (with the reason printed)."""
    try:
        import redis

        redis.Redis(host="127.0.0.1", port=6379, socket_connect_timeout=0.5).ping()
    except Exception as exc:
        print(f"redis: skipped ({exc})")
        return None
    from funnel.features.online.registry import open_online_store

    return open_online_store(f"redis://127.0.0.1:6379/15?prefix=bench-features-{uuid.uuid4().hex[:8]}")


def main() -> None:
    """Run the benchmark; print the table and write ``features.json``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--redis-events", type=int, default=20_000)
    ap.add_argument("--reads", type=int, default=50)
    ap.add_argument("--items", type=int, default=1_000)
    args = ap.parse_args()
    meta = machine_meta()
    ds, events = make_stream(args.events)
    catalog = Catalog.from_items(ds.items)
    items = ds.items.column("item_id").to_pylist()[: args.items]
    rows = []
    backends = [("memory", MemoryOnlineStore(), events)]
    r = redis_store()
    if r is not None:
        backends.append(("redis", r, events[: args.redis_events]))
    for name, store, evs in backends:
        # read at the end of what this backend streamed (its open buckets hold data), as its top user
        active = Counter(getattr(e, "user_id", None) for e in evs if type(e) is Interaction)
        user = active.most_common(1)[0][0]
        t = evs[-1].timestamp + 1
        s = bench_stream(evs, store, catalog)
        row = {"benchmark": "stream updates", "backend": name, "events": s["events"], "wall_s": s["wall_s"]}
        row.update(cpu_s=s["cpu_s"], events_per_s=s["per_s"], events_per_cpu_s=s["events"] / s["cpu_s"])
        rows.append({**row, "target": TARGETS[("stream", name)]})
        keys = [feature_key("user", user, g) for g in ("act", "life", "cat", "creator", "items", "recent")]
        prune(store, keys, t)  # the consumer's upkeep (item bucket keys expire instead)
        for label, cat in (("catalog in process", catalog), ("meta from store", None)):
            if cat is None:
                store.set_many(catalog.meta_rows())
            rd = bench_read(store, cat, user, items, t, args.reads)
            row = {"benchmark": f"read 1 user + {len(items)} items ({label})", "backend": name, **rd}
            rows.append({**row, "target": TARGETS[("read", name)]})
        rd = bench_read(
            store, catalog, user, items, t, args.reads, replay_batches(evs[-5_000:], store, catalog)
        )
        row = {
            "benchmark": f"read 1 user + {len(items)} items (catalog, 500 events between)",
            "backend": name,
        }
        rows.append({**row, **rd, "target": TARGETS[("read", name)]})
        if name == "redis":
            store.teardown()
        store.close()
    meta.update({"feature_version": FEATURE_VERSION, "load_average_after": machine_meta()["load_average"]})
    print_table(rows)
    print(f"results: {write_results('features', rows, meta)}")


if __name__ == "__main__":
    main()
