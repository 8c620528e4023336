"""The benchmarks still run (at smoke-test size, results to a temp dir): they must not rot."""

import os
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


def test_the_als_index_benchmark_runs_on_the_smoke_world(tmp_path):
    # not in run_all (its full size needs bench_api's 1M-item world): run here at --quick size
    env = {**os.environ, "FUNNEL_BENCH_CACHE": str(tmp_path / "cache"), "FUNNEL_BENCH_RESULTS": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_als_index", "--quick", "--users", "60", "--rounds", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    rows = [line.split() for line in run.stdout.splitlines() if line.startswith(("ivf_sq8 ", "ivf_pq_fs "))]
    assert len(rows) == 5, run.stdout[-2000:]  # one per setting
    recall = [float(r[-5]) for r in rows]  # ... k, recall@k, p50_ms, x first row, build_s, memory_MB
    assert all(0.0 <= x <= 1.0 for x in recall), recall
    assert "results:" not in run.stdout and not list(tmp_path.glob("*.json"))  # quick numbers are not written
