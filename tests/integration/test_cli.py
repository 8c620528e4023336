"""The CLI as a user runs it: real subprocesses, exit codes, printed tables, JSON files."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

MOVIETWEETINGS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "movietweetings-100k"


def funnel(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "funnel", *args], capture_output=True, text=True, timeout=300, cwd=cwd
    )


def test_import_with_malformed_rows_names_each_line_and_exits_2(tmp_path):
    csv = tmp_path / "events.csv"
    csv.write_text(
        "uid,sku,ts,action,rating\n"
        "u1,a,1700000000,rating,4\n"
        "u2,b,1700000001,poke,3\n"  # line 3: unknown type
        "u3,c,not-a-time,rating,5\n"  # line 4: bad timestamp
        "u4,d,1700000003,rating,nan\n"  # line 5: non-finite value
        "u5,e,1700000004,rating,2\n"
    )
    args = ["import", "--data-dir", str(tmp_path / "d"), "--data", str(csv), "--format", "csv"]
    args += ["--user-col", "uid", "--item-col", "sku", "--time-col", "ts", "--type-col", "action"]
    args += ["--value-col", "rating"]
    failed = funnel(*args, "--on-error", "fail")
    assert failed.returncode == 2, failed.stderr
    for line in ("3", "4", "5"):
        assert f"line {line}" in failed.stderr or f"row {line}" in failed.stderr, failed.stderr
    assert "Traceback" not in failed.stderr
    assert not list((tmp_path / "d" / "lake").glob("interactions/*.parquet"))  # nothing half-imported

    skipped = funnel(*args, "--on-error", "skip")
    assert skipped.returncode == 0, skipped.stderr
    assert "2 interactions" in skipped.stdout and "3 bad" in skipped.stdout
    assert "row 3" in skipped.stdout and "row 4" in skipped.stdout and "row 5" in skipped.stdout


def test_unknown_format_is_one_clear_line(tmp_path):
    out = funnel("import", "--data-dir", str(tmp_path), "--data", str(tmp_path), "--format", "xml")
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [
        "error: --format: must be one of movielens, movietweetings, csv, parquet, got 'xml'"
    ]


@pytest.mark.skipif(not MOVIETWEETINGS.exists(), reason=f"{MOVIETWEETINGS} not present")
def test_evaluate_prints_table_and_writes_json(tmp_path):
    out = tmp_path / "eval.json"
    run = funnel(
        "evaluate", "--data", str(MOVIETWEETINGS), "--format", "movietweetings", "--protocol", "strat",
        "--k", "10", "--models", "pop,ease", "--json", str(out),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "ease" in run.stdout and "ndcg@10" in run.stdout
    result = json.loads(out.read_text())
    assert result["protocol"] == "strat" and result["k"] == 10
    assert set(result["results"]) == {"pop", "ease"}
    for row in result["results"].values():
        assert {"ndcg", "recall", "precision", "map", "coverage", "fit_seconds"} <= set(row)
    assert result["results"]["ease"]["ndcg"] > result["results"]["pop"]["ndcg"]


def test_demo_then_recommend_from_the_same_data_dir(tmp_path):
    d = tmp_path / "demo"
    run = funnel("demo", "--data-dir", str(d), "--users", "300", "--items", "200", "--interactions", "20000")
    assert run.returncode == 0, run.stderr
    assert "Because you watched" in run.stdout
    cold = run.stdout.split("(cold start)")[1].split("against the hidden ground truth")[0]
    assert any(r in cold for r in ("Popular in US", "Trending now", "New from", "Popular now")), cold
    assert "serving: retrieval + ranker" in run.stdout
    assert "true top-100" in run.stdout
    rec = funnel("recommend", "--data-dir", str(d), "--user", "u000001", "--k", "5", "--json")
    assert rec.returncode == 0, rec.stderr
    payload = json.loads(rec.stdout)
    items = payload["results"]["u000001"]
    assert len(items) == 5 and all(i["reason"] for i in items)
    # a second demo into the same folder replaces it; a foreign folder is refused
    assert funnel("demo", "--data-dir", str(d), "--users", "100", "--items", "80").returncode == 0
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "precious.txt").write_text("x")
    refused = funnel("demo", "--data-dir", str(tmp_path / "mine"))
    assert refused.returncode == 2 and (tmp_path / "mine" / "precious.txt").exists()
