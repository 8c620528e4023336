"""Run every benchmark in turn (``make bench``); each prints its table and writes its JSON.

Usage: ``python -m benchmarks.run_all [--quick]``. ``--quick`` shrinks every benchmark to a
smoke-test size (numbers from it are not the reported ones).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

BENCHMARKS: dict[str, tuple[list[str], list[str]]] = {
    # name: (full-size arguments, --quick arguments)
    "bench_import": ([], ["--rows", "200000", "--runs", "1"]),
    "bench_event_log": ([], ["--events", "20000", "--runs", "1"]),
    "bench_synthetic": ([], ["--items", "10000", "--interactions", "100000"]),
    "bench_features": ([], ["--events", "5000", "--redis-events", "1000", "--reads", "3"]),
    "bench_ann": ([], ["--quick"]),
    "bench_retrieval": ([], ["--quick"]),
    "bench_two_tower": ([], ["--quick"]),
    "bench_rerank": ([], ["--quick"]),
    "bench_ranker": ([], ["--quick"]),
    "bench_train": (["--retrain"], ["--quick"]),
}


def main() -> int:
    """Run the benchmarks; return non-zero when any of them failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke-test sizes")
    args = parser.parse_args()
    env = dict(os.environ)
    if args.quick:  # smoke-test numbers must never replace the reported ones
        env["FUNNEL_BENCH_RESULTS"] = tempfile.mkdtemp(prefix="funnel-bench-quick-")
    failed = []
    for name, (full, quick) in BENCHMARKS.items():
        print(f"\n== {name} ==", flush=True)
        start = time.perf_counter()
        argv = [sys.executable, "-m", f"benchmarks.{name}", *(quick if args.quick else full)]
        code = subprocess.call(argv, env=env)
        print(f"-- {name}: exit {code} in {time.perf_counter() - start:.1f}s", flush=True)
        if code:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
