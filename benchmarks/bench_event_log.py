"""Event-log throughput: durable appends in batches, sequential reads, reopen, dedup of retries.

Run: ``python -m benchmarks.bench_event_log [--events 200000] [--batch 1000] [--runs 3]``

The reference row writes the very bytes the log wrote (same batches: one ``os.write`` + one
``fdatasync`` each) to a plain file, so ``append`` minus ``raw write+fdatasync`` is the cost of
dedup, JSON serialisation and framing; "serialise + frame only" (which includes the id hashes)
splits that further. The machine may be shared: CPU seconds (``time.process_time``) are reported
beside wall seconds, with the load average before and after. Temp dirs live next to the
repository (same disk as the log would be). Results go to ``benchmarks/results/event_log.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from funnel.core.schema import Interaction
from funnel.events.dedup import id_hash
from funnel.events.file_log import FileEventLog
from funnel.events.memory_log import MemoryEventLog
from funnel.events.protocol import event_json
from funnel.events.segment import encode_batch

REPO = Path(__file__).resolve().parents[1]
TYPES = ("view", "click", "watch", "like", "skip")


def make_events(n: int) -> list[Interaction]:
    """Realistic interactions: uuid-sized event ids, request attribution, a small context."""
    return [
        Interaction(
            user_id=f"user-{(k * 7919) % 50_000}",
            item_id=f"item-{(k * 104_729) % 200_000}",
            type=TYPES[k % len(TYPES)],
            timestamp=1_700_000_000_000 + k * 13,
            value=(k % 300) / 10 if k % 2 else None,
            event_id=f"{k:08x}-5e1d-4c6b-9a1f-{k * 2654435761 % 16**12:012x}",
            request_id=f"req-{k // 20}",
            position=k % 20,
            context={"device": "mobile" if k % 3 else "web", "country": "FR"},
        )
        for k in range(n)
    ]


def timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """Wall and CPU seconds of ``fn()``."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def run_once(batches: list[list[Interaction]], path: Path) -> dict[str, tuple[float, float]]:
    """One run of every measurement; (wall, CPU) seconds by row name."""
    n = sum(len(b) for b in batches)
    out: dict[str, tuple[float, float]] = {}
    log = FileEventLog(path / "log")
    out["file: append"] = timed(lambda: [log.append(b) for b in batches])
    log.close()
    out["file: reopen (scan + dedup rebuild)"] = timed(lambda: FileEventLog(path / "log").close())
    with FileEventLog(path / "log") as log:
        out["file: read, 10k per call"] = timed(lambda: _read_all(log, n))
        retry = batches[len(batches) // 2]
        out[f"file: append a retried batch ({len(retry)} duplicates)"] = timed(lambda: log.append(retry))
    out["serialise + frame only (no I/O)"] = timed(lambda: _encode_all(batches))
    blobs = [_frame(b) for b in batches]  # byte for byte what the log wrote
    out["reference: raw os.write + fdatasync"] = timed(lambda: _raw(path / "raw", blobs))
    mem = MemoryEventLog()
    out["memory: append"] = timed(lambda: [mem.append(b) for b in batches])
    return out


def bench(events: list[Interaction], batch: int, runs: int, workdir: Path) -> list[dict[str, Any]]:
    """Median of ``runs`` runs of every measurement, as table rows."""
    batches = [events[i : i + batch] for i in range(0, len(events), batch)]
    times: dict[str, list[tuple[float, float]]] = {}
    for run in range(runs):
        (workdir / str(run)).mkdir()
        for name, seconds in run_once(batches, workdir / str(run)).items():
            times.setdefault(name, []).append(seconds)
    nbytes = sum(p.stat().st_size for p in (workdir / "0" / "log").glob("*.log"))
    rows = []
    for name, secs in times.items():
        wall = statistics.median(w for w, _ in secs)
        cpu = statistics.median(c for _, c in secs)
        count = batch if "retried" in name else len(events)
        rows.append(
            {
                "benchmark": name,
                "events": count,
                "median_s": round(wall, 4),
                "events_per_s": round(count / wall),
                "cpu_s": round(cpu, 4),
                "events_per_cpu_s": round(count / cpu) if cpu else None,
                "runs_s": [round(w, 4) for w, _ in secs],
            }
        )
    rows[0]["mb_per_s"] = round(nbytes / 1e6 / rows[0]["median_s"], 1)
    return rows


def _read_all(log: FileEventLog, n: int) -> None:
    offset = 0
    while offset < n:
        offset += len(log.read(offset, 10_000))


def _frame(batch: list[Interaction]) -> bytes:
    return encode_batch(
        [event_json(e) for e in batch], [id_hash(e.event_id) if e.event_id else 0 for e in batch]
    )[0]


def _encode_all(batches: list[list[Interaction]]) -> None:
    for b in batches:
        _frame(b)


def _raw(path: Path, blobs: list[bytes]) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for blob in blobs:
            os.write(fd, blob)
            os.fdatasync(fd)
    finally:
        os.close(fd)


try:  # the shared helpers (benchmarks/common.py), when present
    from benchmarks.common import machine_meta, print_table, write_results
except ImportError:  # a few lines of our own otherwise

    def machine_meta() -> dict[str, Any]:
        return {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count()}

    def print_table(rows: list[dict[str, Any]]) -> None:
        keys = ["benchmark", "events", "median_s", "events_per_s", "cpu_s", "events_per_cpu_s"]
        print("  ".join(keys))
        for r in rows:
            print("  ".join(str(r[k]) for k in keys))

    def write_results(name: str, rows: list[dict[str, Any]], meta: dict[str, Any]) -> Path:
        out = REPO / "benchmarks" / "results" / f"{name}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"name": name, "meta": meta, "rows": rows}, indent=2) + "\n")
        return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    events = make_events(args.events)
    load_before = os.getloadavg()  # the machine may be shared: record how busy it was
    with tempfile.TemporaryDirectory(prefix="funnel-bench-event-log-", dir=REPO.parent) as tmp:
        rows = bench(events, args.batch, args.runs, Path(tmp))
    meta = {
        **machine_meta(),
        "events": args.events,
        "batch": args.batch,
        "runs": args.runs,
        "target_append_events_per_s": 50_000,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    print_table(rows)
    path = write_results("event_log", rows, meta)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
