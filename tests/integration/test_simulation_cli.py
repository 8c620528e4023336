"""``funnel simulate`` as a user runs it: determinism byte for byte, the report, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

SMALL = ["--users", "120", "--days", "3", "--items", "120", "--visits-per-day", "1", "--seed", "3"]


def funnel(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "funnel", *args], capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_two_runs_with_one_seed_give_the_same_bytes_and_a_report(tmp_path: Path):
    scenarios = tmp_path / "scenarios.json"
    scenarios.write_text(json.dumps([{"name": "retrain-2d", "retrain_days": 2, "gate": False}]))
    outs = []
    for run in ("a", "b"):
        done = funnel(
            "simulate", *SMALL, "--data-dir", str(tmp_path / run), "--scenario", str(scenarios),
            "--json", str(tmp_path / f"{run}.json"),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        assert "retrain-2d: CTR" in done.stdout
        outs.append((tmp_path / f"{run}.json").read_bytes())
    assert outs[0] == outs[1]  # retrains included: the whole loop is a function of the seed
    doc = json.loads(outs[0])
    days = doc["scenarios"]["retrain-2d"]["days"]
    assert [d["day"] for d in days] == [0, 1, 2] and all(d["pages"] > 0 for d in days)
    # a retrain after day 1, live (gate off), so the determinism covers training too
    assert [r["status"] for r in doc["scenarios"]["retrain-2d"]["retrains"]] == ["live"]
    assert "timings" not in json.dumps(doc) and "seconds" not in json.dumps(doc)
    assert (tmp_path / "a" / "simulation" / "simulation.json").read_bytes() == outs[0]
    table = pq.read_table(tmp_path / "a" / "simulation" / "daily.parquet")
    assert table.num_rows == 3 and table.column("ctr").to_pylist() == [d["ctr"] for d in days]

    report = funnel(
        "report", "--simulation", str(tmp_path / "a" / "simulation"), "--out", str(tmp_path / "r")
    )
    assert report.returncode == 0, report.stderr
    html = (tmp_path / "r" / "index.html").read_text()
    assert "retrain-2d" in html and "sim_daily.png" in html
    assert (tmp_path / "r" / "sim_daily.png").stat().st_size > 10_000
    assert (tmp_path / "r" / "sim_tradeoff.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    ("scenario", "extra", "message"),
    [
        ('{"explore_rate": 2}', [], "explore_rate must be in [0, 1]"),
        ('{"name": "x", "surprise": 1}', [], "unknown key(s) ['surprise']"),
        (None, ["--json", "."], "is a directory"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, scenario, extra, message):
    args = ["simulate", *SMALL, "--data-dir", str(tmp_path / "d"), *extra]
    if scenario is not None:
        (tmp_path / "s.json").write_text(scenario)
        args += ["--scenario", str(tmp_path / "s.json")]
    done = funnel(*args)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert not (tmp_path / "d").exists()  # nothing started


def test_an_existing_engine_directory_is_refused(tmp_path: Path):
    (tmp_path / "d" / "default").mkdir(parents=True)
    done = funnel("simulate", *SMALL, "--data-dir", str(tmp_path / "d"))
    assert done.returncode == 2 and "already exists: pick an empty --data-dir" in done.stderr
