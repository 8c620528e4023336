"""Importer throughput and peak memory: a synthetic generic CSV through ``import_dataset`` to Parquet.

Run: ``python -m benchmarks.bench_import [--rows 10000000] [--runs 3] [--chunk-mb 64]``

Writes a CSV (``user_id,item_id,timestamp,type,value``; epoch seconds; a third of the values
empty) to a temp dir, then measures, each in a fresh subprocess so its peak RSS is its own
(``ru_maxrss`` of that child, from ``os.wait4`` — the per-child form of ``RUSAGE_CHILDREN``):

* ``import_dataset(fmt="csv")`` with validation, sinking into a ``ParquetWriter`` (the thing measured);
* ``pyarrow.csv.open_csv`` streaming read of the same file, no validation (the reference);
* the same raw read, also written to Parquet (to show what the Parquet write alone costs).

Modes are interleaved run by run; the median time of ``--runs`` runs is reported (wall seconds,
and CPU seconds of all threads, since the machine may be shared), the peak memory is the largest
of the runs. Results go to ``benchmarks/results/import.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv
import pyarrow.parquet as pq

from benchmarks.common import machine_meta, print_table, write_results

TYPES = ("view", "click", "watch", "like", "rating")
MODES = {
    "import_dataset(csv) -> parquet": "import",
    "raw pyarrow open_csv (reference)": "raw",
    "raw open_csv -> parquet": "raw_parquet",
}
TARGET_ROWS_PER_S = 500_000
TARGET_PEAK_MB = 2048


def write_csv(path: Path, rows: int, seed: int = 0, batch: int = 1_000_000) -> None:
    """Write ``rows`` synthetic interactions, unquoted, batch by batch (bounded memory)."""
    rng = np.random.default_rng(seed)
    schema = pa.schema([(c, pa.string()) for c in ("user_id", "item_id")] + [("timestamp", pa.int64())])
    schema = schema.append(pa.field("type", pa.string())).append(pa.field("value", pa.float64()))
    options = pv.WriteOptions(quoting_style="none")
    with pv.CSVWriter(path, schema, write_options=options) as writer:
        for start in range(0, rows, batch):
            n = min(batch, rows - start)
            users = pc.binary_join_element_wise(
                "u", pa.array(rng.integers(0, 1_000_000, n)).cast(pa.string()), ""
            )
            items = pc.binary_join_element_wise(
                "i", pa.array(rng.integers(0, 200_000, n)).cast(pa.string()), ""
            )
            ts = 1_600_000_000 + np.sort(rng.integers(0, 100_000_000, n))
            kinds = pa.array(TYPES).take(pa.array(rng.integers(0, len(TYPES), n)))
            value = np.round(rng.random(n) * 10, 1)
            values = pa.array(value, mask=rng.random(n) < 1 / 3)
            writer.write_table(pa.table([users, items, pa.array(ts), kinds, values], schema=schema))


def child(mode: str, csv: Path, out: Path, chunk_bytes: int) -> dict[str, Any]:
    """Run one measurement in this (child) process; return seconds and rows."""
    from funnel.core.schema import INTERACTIONS
    from funnel.data.importers import import_dataset

    start, cpu = time.perf_counter(), time.process_time()  # module imports are not timed
    if mode == "import":
        with pq.ParquetWriter(out, INTERACTIONS) as writer:
            report = import_dataset(
                csv,
                "csv",
                sink=lambda kind, t: writer.write_table(t),
                chunk_bytes=chunk_bytes,
                progress=False,
            )
        rows, bad = report.rows_ok["interactions"], report.n_bad
    else:
        reader = pv.open_csv(csv, read_options=pv.ReadOptions(block_size=chunk_bytes))
        rows, bad, writer = 0, 0, None
        for batch in reader:
            rows += batch.num_rows
            if mode == "raw_parquet":
                writer = writer or pq.ParquetWriter(out, batch.schema)
                writer.write_batch(batch)
        if writer is not None:
            writer.close()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {"seconds": seconds, "cpu_seconds": cpu, "rows": rows, "bad": bad}


def measure(mode: str, csv: Path, out: Path, chunk_bytes: int) -> dict[str, Any]:
    """Run ``child`` in a fresh interpreter; add its wall time and peak RSS (MB)."""
    cmd = [sys.executable, "-m", "benchmarks.bench_import", "--child", mode, "--csv", str(csv)]
    cmd += ["--out", str(out), "--chunk-mb", str(chunk_bytes / (1 << 20))]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parents[1])
    assert proc.stdout is not None
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{mode} child failed with exit code {proc.returncode}")
    result = json.loads(output)
    result["wall_seconds"] = time.perf_counter() - start
    result["peak_mb"] = usage.ru_maxrss / 1024  # Linux: kilobytes
    out.unlink(missing_ok=True)
    return result


def bench(
    rows: int, runs: int, chunk_bytes: int, workdir: Path
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Generate the file, measure every mode ``runs`` times (interleaved), summarise."""
    csv = workdir / "interactions.csv"
    start = time.perf_counter()
    write_csv(csv, rows)
    meta = {
        "generate_seconds": round(time.perf_counter() - start, 2),
        "csv_mb": round(csv.stat().st_size / 2**20, 1),
    }
    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES.values()}
    for _ in range(runs):
        for mode in MODES.values():
            results[mode].append(measure(mode, csv, workdir / f"{mode}.parquet", chunk_bytes))
    table = []
    for name, mode in MODES.items():
        secs = [r["seconds"] for r in results[mode]]
        median = statistics.median(secs)
        table.append(
            {
                "benchmark": name,
                "rows": results[mode][0]["rows"],
                "median_s": round(median, 3),
                "rows_per_s": round(rows / median),
                "cpu_s": round(statistics.median(r["cpu_seconds"] for r in results[mode]), 3),
                "peak_mb": round(max(r["peak_mb"] for r in results[mode]), 1),
                "runs_s": [round(s, 3) for s in secs],
            }
        )
    raw = table[1]["rows_per_s"]
    for row in table:
        row["vs_raw"] = round(row["rows_per_s"] / raw, 3)
    ours = table[0]
    meta["meets_target"] = ours["rows_per_s"] >= TARGET_ROWS_PER_S and ours["peak_mb"] < TARGET_PEAK_MB
    meta["bad_rows"] = results["import"][0]["bad"]
    return table, meta


def main() -> None:
    """Parse arguments; run as the parent (default) or as one measured child (``--child``)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--chunk-mb", type=float, default=64)
    ap.add_argument("--workdir", type=Path, default=None, help="where the CSV goes (default: system temp)")
    ap.add_argument("--child", choices=sorted(set(MODES.values())), help=argparse.SUPPRESS)
    ap.add_argument("--csv", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    chunk_bytes = int(args.chunk_mb * (1 << 20))
    if args.child:
        print(json.dumps(child(args.child, args.csv, args.out, chunk_bytes)))
        return
    meta: dict[str, Any] = {
        "rows": args.rows,
        "runs": args.runs,
        "chunk_bytes": chunk_bytes,
        "pyarrow": pa.__version__,
        "target_rows_per_s": TARGET_ROWS_PER_S,
        "target_peak_mb": TARGET_PEAK_MB,
        **machine_meta(),
    }
    with tempfile.TemporaryDirectory(prefix="funnel-bench-import-", dir=args.workdir) as tmp:
        rows, extra = bench(args.rows, args.runs, chunk_bytes, Path(tmp))
    meta |= extra
    meta["load_average_after"] = list(os.getloadavg())
    print_table(rows)
    verdict = "met" if meta["meets_target"] else "MISSED"
    target = f"target >= {TARGET_ROWS_PER_S:,} rows/s and < {TARGET_PEAK_MB} MB: {verdict}"
    print(f"CSV {meta['csv_mb']} MB, {args.rows:,} rows; {target}")
    print(f"wrote {write_results('import', rows, meta)}")


if __name__ == "__main__":
    main()
