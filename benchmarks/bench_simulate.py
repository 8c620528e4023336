"""Speed of the closed-loop simulator in process (:mod:`funnel.simulation`).

Run: ``python -m benchmarks.bench_simulate [--users 10000 --days 30 --items 2000] [--quick]``.
Simulates one scenario (the engine's defaults, weekly retraining that goes live whatever the gate
says, so every retrain is paid in full) and prints where the time went: world + first training
(``setup``), serving pages (``serve``), drawing responses and the oracle (``respond``), event-log
writes + catch-up (``write``), new items (``items``), retraining (``retrain``), per page and in
total. Writes ``benchmarks/results/simulate.json``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time

from benchmarks.common import machine_meta, print_table, write_results
from funnel.simulation import Scenario, SimConfig, simulate


def world_parser(description: str) -> argparse.ArgumentParser:
    """The world's options shared by the simulation benchmarks (``--quick``: a smoke-test world)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--items", type=int, default=2_000)
    p.add_argument("--visits-per-day", type=float, default=SimConfig.visits_per_day)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke-test size")
    return p


def world_config(args: argparse.Namespace) -> SimConfig:
    """The :class:`SimConfig` of parsed :func:`world_parser` options."""
    if args.quick:
        args.users, args.days, args.items = 150, 2, 150
    return SimConfig(
        users=args.users,
        days=args.days,
        seed=args.seed,
        n_items=args.items,
        visits_per_day=args.visits_per_day,
    )


def main() -> None:
    args = world_parser(__doc__.splitlines()[0]).parse_args()
    config = world_config(args)
    folder = tempfile.mkdtemp(prefix="funnel-bench-sim-")
    started = time.perf_counter()
    try:
        result = simulate(config, Scenario(gate=False, retrain_days=7), folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    total = time.perf_counter() - started
    pages = result.summary["pages"]
    t = result.timings
    row = {
        "users": args.users,
        "days": args.days,
        "items": args.items,
        "pages": pages,
        "retrains": len(result.retrains),
        "total_s": round(total, 1),
        "setup_s": round(t["setup"], 1),
        "serve_s": round(t["serve"], 1),
        "respond_s": round(t["respond"], 1),
        "write_s": round(t["write"], 1),
        "items_s": round(t["items"], 1),
        "retrain_s": round(t["retrain"], 1),
        "serve_ms_per_page": round(1000 * t["serve"] / max(pages, 1), 2),
        "under_10_min": total < 600,
    }
    print_table([row])
    meta = {**machine_meta(), "config": config.to_dict(), "retrain_outcomes": result.retrains}
    print(f"wrote {write_results('simulate', [row], meta)}")


if __name__ == "__main__":
    main()
