"""``funnel recommend --all-users --out F.parquet``: killed mid-run and resumed = one run; bad flags exit 2.

On the session's trained directory (60 users, retrieval + ranker + re-ranker): a reference run in
process (one worker); then the CLI with two worker processes, SIGKILLed (the whole process group)
as soon as its first parts are written; a rerun with another ``--k`` is refused with one line; the
rerun with the same flags computes only the missing parts and writes a file equal to the
reference, row for row. Every user has ``k`` ranked rows with a reason code.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

from funnel.batch import SCHEMA, run_batch
from funnel.engine import Engine

K, PART = 5, 3


def _cli(data: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "funnel", "recommend", "--data-dir", str(data), *args]


def test_killed_run_resumes_to_the_output_of_one_run(api_data_template: Path, tmp_path: Path):
    data = tmp_path / "data"
    shutil.copytree(api_data_template, data)
    reference = run_batch(data, tmp_path / "reference.parquet", k=K, part_size=PART)
    trained = Engine(data).pipeline(catch_up=False).bundle.users.keys.to_pylist()
    lake = Engine(data).lake.read("users").column("user_id").to_pylist()
    users = trained + [u for u in lake if u not in set(trained)]
    assert reference.users == len(users) == 60 and reference.parts_run == 20  # one user never interacted
    table = pq.read_table(tmp_path / "reference.parquet")
    assert table.schema.remove_metadata() == SCHEMA and table.num_rows == K * len(users)
    assert table.schema.metadata[b"funnel.model_version"] == reference.version.encode()
    assert table.column("user_id").unique().to_pylist() == users  # every user, in the version's order
    assert table.column("rank").to_pylist() == list(range(1, K + 1)) * len(users)
    assert all(table.column("reason_code").to_pylist())

    out = tmp_path / "top.parquet"
    parts = tmp_path / "top.parquet.parts"
    args = ["--all-users", "--out", str(out), "--k", str(K), "--part-size", str(PART)]
    run = subprocess.Popen(
        _cli(data, *args, "--workers", "2"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not list(parts.glob("part-*.parquet")):
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()[0]
        time.sleep(0.01)
    os.killpg(run.pid, signal.SIGKILL)  # the CLI and both workers, mid-run
    run.wait(10)
    done = len(list(parts.glob("part-*.parquet")))
    assert 0 < done < 20 and not out.exists()

    refused = subprocess.run(_cli(data, *args[:3], "--k", "7", *args[5:]), capture_output=True, text=True)
    assert refused.returncode == 2
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --k:") and "--k 5" in lines[0], refused.stderr

    resumed = subprocess.run(_cli(data, *args), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{20 - done} parts computed, {done} already done" in resumed.stdout, resumed.stdout
    assert pq.read_table(out).equals(table) and not parts.exists()
    print(f"killed after {done} of 20 parts; resumed output equals the single run ({table.num_rows} rows)")


def test_bad_flags_exit_2_with_one_line(api_data_template: Path, tmp_path: Path):
    out = str(tmp_path / "top.parquet")
    cases = {
        "--out: --all-users needs --out FILE.parquet": ["--all-users"],
        "--out: must name a .parquet file": ["--all-users", "--out", str(tmp_path / "top.csv")],
        "--workers: must be an integer from 1 to 64, got 0": ["--all-users", "--out", out, "--workers", "0"],
        "--all-users: --all-users takes no --user or --item": ["--all-users", "--out", out, "--user", "u1"],
        "--out: --out writes the top-k of every user: add --all-users": ["--out", out],
    }
    runs = {
        want: subprocess.Popen(
            _cli(api_data_template, *a), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for want, a in cases.items()
    }
    for want, proc in runs.items():
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 2, (want, stdout, stderr)
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {want}"), stderr
    assert not list(tmp_path.iterdir())  # nothing written
