"""The load client of :mod:`benchmarks.bench_api` when ``wrk`` is installed: a C client on loopback.

A Python client costs the 2-core machine ~1.4 ms of CPU per request (``httpx`` on uvloop), which
the server under test then lacks; ``wrk`` costs a few µs. :func:`drive_wrk` runs one closed-loop
level (``wrk -c concurrency``, one thread) over the user mix with
``wrk_recommendations.lua`` and returns the same fields as ``bench_api.drive``; ``client_cpu`` is
wrk's own CPU seconds per wall second, read from ``getrusage`` of the finished child;
``by_worker`` the responses per server process (``x-funnel-worker``), largest first: keep-alive
connections stay with the process that accepted them, so the split shows how evenly the
``concurrency`` connections landed.

Example (a server on port 8000)::

    from benchmarks.wrk_client import drive_wrk, wrk_available
    if wrk_available():
        print(drive_wrk("http://127.0.0.1:8000", ["u1", "u2"], 8, 10.0, limit=10)["p99_ms"])
"""

from __future__ import annotations

import json
import math
import resource
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

SCRIPT = Path(__file__).resolve().parent / "wrk_recommendations.lua"


def wrk_available() -> bool:
    """Whether a ``wrk`` executable is on ``PATH``."""
    return shutil.which("wrk") is not None


def request_paths(users: list[str], limit: int) -> list[str]:
    """One ``/v1/recommendations`` path (query string encoded) per user, in order."""
    return [f"/v1/recommendations?{urlencode({'user_id': u, 'limit': limit})}" for u in users]


def parse_wrk(stdout: str) -> dict[str, Any]:
    """The ``WRK_JSON`` line the Lua script's ``done()`` printed, as a dict."""
    for line in stdout.splitlines():
        if line.startswith("WRK_JSON "):
            return json.loads(line[len("WRK_JSON ") :])
    raise RuntimeError(f"wrk printed no WRK_JSON line:\n{stdout[-2000:]}")


def drive_wrk(
    base: str, users: list[str], concurrency: int, seconds: float, limit: int, threads: int = 1
) -> dict[str, Any]:
    """One load level with ``wrk``: ``concurrency`` connections for ``seconds``, pages of ``limit`` items."""
    with tempfile.NamedTemporaryFile("w", suffix=".paths", delete=False) as f:
        f.write("\n".join(request_paths(users, limit)) + "\n")
    threads = max(1, min(threads, concurrency))
    whole = max(1, math.ceil(seconds))  # wrk takes whole seconds ("1.5s" is an error)
    cmd = ["wrk", "-t", str(threads), "-c", str(concurrency), "-d", f"{whole}s", "--timeout", "60s",
           "-s", str(SCRIPT), base, "--", f.name]  # fmt: skip
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    finally:
        Path(f.name).unlink(missing_ok=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    got = parse_wrk(done.stdout)
    wall = got["duration_us"] / 1e6
    socket_errors = got["connect_errors"] + got["read_errors"] + got["write_errors"] + got["timeouts"]
    n, ok = got["requests"], got["requests"] - got["non200"]
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "requests": n,
        "errors": got["non200"] + socket_errors,
        "p50_ms": got["p50_us"] / 1e3 if n else None,
        "p95_ms": got["p95_us"] / 1e3 if n else None,
        "p99_ms": got["p99_us"] / 1e3 if n else None,
        "rps": n / wall if wall else 0.0,
        "fallback_share": got["fallbacks"] / max(1, ok),
        "client_cpu": cpu / wall if wall else 0.0,
        "error_kinds": {"non_200": got["non200"], "socket": socket_errors},
        "fallback_kinds": {"any": got["fallbacks"]},
        "by_worker": sorted(got["by_worker"].values(), reverse=True),
    }
