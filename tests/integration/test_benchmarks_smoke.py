"""The benchmarks still run (at smoke-test size, results to a temp dir): they must not rot."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_benchmark_runs_at_quick_size():
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.run_all", "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    for name in ("bench_import", "bench_event_log", "bench_synthetic", "bench_two_tower", "bench_train"):
        assert f"-- {name}: exit 0" in run.stdout
    assert str(ROOT / "benchmarks" / "results") not in run.stdout  # quick numbers never replace real ones
