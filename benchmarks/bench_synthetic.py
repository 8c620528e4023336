"""Synthetic generator throughput and memory: seconds per stage, rows/s and peak RSS.

Run: ``python -m benchmarks.bench_synthetic [--items 1000000 --interactions 10000000] [--users N]``

Each configuration runs in a fresh subprocess so its peak RSS (``resource.getrusage``) is its own.
Stages are those of ``generate`` (world, catalog, sessions, tables) plus ``write`` (Parquet +
``truth.npz`` into a temp folder next to the repository, skipped with ``--no-write``). Results go to
``benchmarks/results/synthetic.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import machine_meta, print_table, write_results

REPO = Path(__file__).resolve().parents[1]


def child(items: int, users: int, interactions: int, seed: int, write: bool) -> dict[str, Any]:
    from funnel.data.synthetic import SyntheticConfig, generate, write_dataset

    config = SyntheticConfig(n_users=users, n_items=items, n_interactions=interactions, seed=seed)
    stages: dict[str, float] = {}
    t0 = time.perf_counter()
    ds = generate(config, timings=stages)
    seconds = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    row: dict[str, Any] = {
        "items": items,
        "users": users,
        "interactions": ds.interactions.num_rows,
        "impressions": ds.impressions.num_rows,
        **{f"{name}_s": round(value, 1) for name, value in stages.items()},
        "generate_s": round(seconds, 1),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
        "interactions_per_s": round(ds.interactions.num_rows / seconds),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
        "tables_mb": round(
            sum(t.nbytes for t in (ds.items, ds.users, ds.interactions, ds.impressions)) / 1e6
        ),
    }
    if write:
        with tempfile.TemporaryDirectory(dir=REPO) as tmp:
            t1 = time.perf_counter()
            folder = write_dataset(ds, Path(tmp) / "syn")
            row["write_s"] = round(time.perf_counter() - t1, 1)
            row["disk_mb"] = round(sum(p.stat().st_size for p in folder.iterdir()) / 1e6)
        row["peak_rss_write_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return row


def run_child(items: int, users: int, interactions: int, seed: int, write: bool) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.bench_synthetic", "--child", "--items", str(items), "--users",
           str(users), "--interactions", str(interactions), "--seed", str(seed)]  # fmt: skip
    if not write:
        cmd.append("--no-write")
    out = subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, nargs="+", default=[100_000])
    ap.add_argument("--interactions", type=int, nargs="+", default=[1_000_000])
    ap.add_argument("--users", type=int, default=0, help="0 = interactions // 50")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if len(args.items) != len(args.interactions):
        ap.error("give as many --items as --interactions (one run per pair)")
    if args.child:
        users = args.users or max(1, args.interactions[0] // 50)
        print(json.dumps(child(args.items[0], users, args.interactions[0], args.seed, not args.no_write)))
        return
    rows = []
    for items, interactions in zip(args.items, args.interactions, strict=True):
        users = args.users or max(1, interactions // 50)
        rows.append(run_child(items, users, interactions, args.seed, not args.no_write))
        print(f"done: {items} items, {interactions} interactions", file=sys.stderr, flush=True)
    print_table(rows)
    meta = {
        **machine_meta(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": "python -m benchmarks.bench_synthetic " + " ".join(sys.argv[1:]),
    }
    print(f"wrote {write_results('synthetic', rows, meta)}")


if __name__ == "__main__":
    main()
