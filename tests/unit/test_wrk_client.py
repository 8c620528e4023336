"""The wrk load client of bench_api: its Lua script against a real loopback server, and its parsing."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import parse_qs, urlparse

import pytest

from benchmarks.wrk_client import drive_wrk, parse_wrk, request_paths, wrk_available


def test_request_paths_encode_the_user_id() -> None:
    assert request_paths(["u 1", "a&b"], limit=5) == [
        "/v1/recommendations?user_id=u+1&limit=5",
        "/v1/recommendations?user_id=a%26b&limit=5",
    ]


def test_parse_wrk_reads_the_json_line_and_refuses_output_without_it() -> None:
    out = 'Running 1s test\nWRK_JSON {"requests": 3, "by_worker": {"7": 3}}\n'
    assert parse_wrk(out) == {"requests": 3, "by_worker": {"7": 3}}
    with pytest.raises(RuntimeError, match="no WRK_JSON line"):
        parse_wrk("Running 1s test\n")


class _Handler(BaseHTTPRequestHandler):
    """Answers like /v1/recommendations: users named "fb-*" get a fallback page, "bad-*" a 400."""

    protocol_version = "HTTP/1.1"
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        user = parse_qs(urlparse(self.path).query)["user_id"][0]
        self.seen.append(user)
        status = 400 if user.startswith("bad-") else 200
        fallback = '"popular"' if user.startswith("fb-") else "null"
        body = json.dumps({"items": []})[:-1].encode() + f', "fallback":{fallback}}}'.encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.send_header("x-funnel-worker", "4242")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.skipif(not wrk_available(), reason="wrk is not installed (Debian: apt-get install wrk)")
def test_drive_wrk_counts_requests_fallbacks_errors_and_workers() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        users = ["u1", "fb-1", "u2", "bad-1"]
        base = f"http://127.0.0.1:{server.server_port}"
        got = drive_wrk(base, users, concurrency=1, seconds=0.5, limit=10)  # wrk takes whole seconds
    finally:
        server.shutdown()
        server.server_close()
    n = got["requests"]
    start = users.index(_Handler.seen[0])  # (wrk builds one request before the run starts)
    asked = [users[(start + i) % len(users)] for i in range(n)]  # one connection: file order, cycled
    assert n >= 8 and _Handler.seen[:n] == asked  # (a last request may be in flight at the deadline)
    assert got["by_worker"] == [n]  # every response named worker 4242
    bad = sum(u.startswith("bad-") for u in asked)
    fallback = sum(u.startswith("fb-") for u in asked)
    assert got["error_kinds"] == {"non_200": bad, "socket": 0} and got["errors"] == bad
    assert got["fallback_share"] == pytest.approx(fallback / (n - bad))
    assert 0 < got["p50_ms"] <= got["p95_ms"] <= got["p99_ms"]
