"""``funnel serve --redis ... --workers 2``: shared state across workers, and degradation when Redis fails.

Both tests run the real command (``python -m funnel serve``) as a subprocess on a free port over a
small ``model="pop"`` data directory, and tell the uvicorn workers apart by the
``x-funnel-worker`` response header; every request opens a new connection so that both workers
answer.

* ``test_two_workers_share_interactions_and_unlisting`` (the shared Redis, DB 15, a unique
  prefix deleted afterwards): an interaction POSTed to one worker is reflected in that user's
  next page from either worker within 5 s — the clicked item leaves the user's page (seen filter)
  while a control user still gets it — and an item DELETEd through the API is returned by no
  worker afterwards.
* ``test_degradation_when_redis_stops_and_returns`` (a private ``redis-server`` with AOF
  ``appendfsync always`` on a free port, as in ``test_redis_fault.py``): the API starts while
  Redis is down (readyz 503, pages 200 with ``fallback="stale_state"``, writes 503), recovers when
  Redis starts, then two client threads request pages continuously while Redis is frozen (SIGSTOP:
  calls hang until the socket timeout) and later SIGKILLed and restarted. Every page answered is a
  200 (stale while Redis is away, fresh again by itself once it is back), latency stays bounded by
  the short Redis timeout and the circuit breaker, writes while Redis is away are 503 with a
  message saying so, an event acknowledged before the kill is still there after the restart, and
  an event POSTed after recovery is accepted and reflected. Finally Redis refuses writes
  (``maxmemory`` reached under ``noeviction``): writes are 503, pages stay fresh.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_server import ApiServer, free_port, interaction, wait_reflected

from funnel.data.synthetic import SyntheticConfig, generate
from funnel.engine import Engine

SHARED_REDIS = "redis://127.0.0.1:6379/15"
REDIS_TIMEOUT_S = 0.5  # the degradation test's --redis ...?timeout=
FRESHNESS_S = 5.0  # the bound: an interaction shows in the user's next page within 5 s


# ---- fixtures: a trained data directory, a private redis-server, the API server ------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """A data directory with a popularity model on a tiny synthetic set, and its user ids."""
    root = tmp_path_factory.mktemp("trained")
    data = generate(SyntheticConfig(n_users=60, n_items=80, n_interactions=3000, seed=1))
    engine = Engine(root)
    engine.import_interactions(data.interactions)
    engine.import_items(data.items)
    engine.train(model="pop")
    engine.close()
    return root, sorted(set(data.interactions.column("user_id").to_pylist()))


@pytest.fixture
def data_dir(trained: tuple[Path, list[str]], tmp_path: Path) -> Path:
    """A private copy (DELETE writes the lake)."""
    return Path(shutil.copytree(trained[0], tmp_path / "data"))


class RedisServer:
    """A private ``redis-server`` (AOF ``appendfsync always``) that can be frozen, killed, restarted."""

    def __init__(self, data_dir: Path) -> None:
        self.dir, self.port = data_dir, free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir)]
        args += ["--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no"]
        args += ["--logfile", str(self.dir / "redis.log")]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"redis-server exited: {self.log_tail()}"
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(64).startswith(b"+PONG"):  # -LOADING while the AOF replays
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"redis-server did not answer in 15 s: {self.log_tail()}")

    def signal(self, sig: int) -> None:
        assert self.proc is not None and self.proc.poll() is None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait(timeout=10)

    def command(self, *args: str) -> bytes:
        """One inline command over a raw socket (no client library state to disturb)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall((" ".join(args) + "\r\n").encode())
            return s.recv(4096)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log_tail(self) -> str:
        path = self.dir / "redis.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else "(no log)"


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A private server, not started yet (the test starts it when it wants Redis up)."""
    if shutil.which("redis-server") is None:
        if "CI" in os.environ:
            pytest.fail("redis-server is required under CI", pytrace=False)
        pytest.skip("redis-server is not installed (set CI=true to make this a failure)")
    (tmp_path / "redis").mkdir()
    srv = RedisServer(tmp_path / "redis")
    yield srv
    srv.stop()


# ---- (a) shared state across two workers --------------------------------------------------------


@pytest.mark.redis
def test_two_workers_share_interactions_and_unlisting(
    data_dir: Path, trained: tuple[Path, list[str]], redis_namespace: str, tmp_path: Path
) -> None:
    log = tmp_path / "serve.log"
    api = ApiServer(data_dir, log, redis_url=SHARED_REDIS, prefix=redis_namespace, workers=2)
    try:
        api.wait_up(workers=2)
        for _ in range(20):
            ready = api.request("GET", "/readyz")
            assert ready.status_code == 200, ready.text
        # a user the model never saw gets the popular page; the click must take its top item out
        user, control = f"new-{uuid.uuid4().hex[:8]}", f"control-{uuid.uuid4().hex[:8]}"
        r, before = api.page(user)
        assert r.status_code == 200 and before, r.text
        clicked = before[0]
        assert clicked in api.page(control)[1]
        post = api.request("POST", "/v1/interactions", json=interaction(user, clicked, uuid.uuid4().hex))
        assert post.status_code == 202, post.text
        assert post.json()["accepted"] == 1
        waited = wait_reflected(api, user, clicked, control, FRESHNESS_S, workers=2).seconds
        history = api.request("GET", f"/v1/users/{user}/history").json()["items"]
        assert [(h["item_id"], h["action"]) for h in history] == [(clicked, "click")]

        # unlist an item every worker was returning, through one of them
        users = trained[1][:20]
        shown: dict[str, set[str]] = {}
        for k in range(60):
            r, items = api.page(users[k % len(users)])
            for item in items:
                shown.setdefault(item, set()).add(r.headers["x-funnel-worker"])
        victim = next(item for item, workers in shown.items() if len(workers) == 2)
        deleted = api.request("DELETE", f"/v1/items/{victim}")
        assert deleted.status_code == 204, deleted.text
        answered: dict[str, int] = {}
        for k in range(120):
            r, items = api.page(users[k % len(users)], limit=20)
            assert r.status_code == 200 and victim not in items, (k, r.headers.get("x-funnel-worker"))
            assert r.json()["fallback"] != "stale_state"
            answered[r.headers["x-funnel-worker"]] = answered.get(r.headers["x-funnel-worker"], 0) + 1
        assert len(answered) == 2, answered
        for _ in range(10):
            assert api.request("GET", f"/v1/items/{victim}/similar").status_code == 404
        print(f"\nclick reflected after {waited:.3f} s; {victim} unlisted, pages per worker {answered}")
    finally:
        api.stop()


# ---- (b) degradation: Redis down at boot, frozen, killed, restarted -----------------------------


@dataclass
class Sample:
    started: float
    seconds: float
    status: int
    fallback: str | None
    worker: str
    error: str = ""


@dataclass
class Load:
    """Client threads requesting pages back to back until stopped."""

    api: ApiServer
    users: list[str]
    samples: list[Sample] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, k: int = 0) -> None:
        while not self.stop.is_set():
            t0 = time.monotonic()
            try:
                r, _ = self.api.page(self.users[k % len(self.users)])
                fallback = r.json().get("fallback") if r.status_code == 200 else None
                sample = Sample(
                    t0, time.monotonic() - t0, r.status_code, fallback, r.headers.get("x-funnel-worker", "?")
                )
                if r.status_code != 200:
                    sample.error = r.text[:300]
            except Exception as exc:  # a transport failure is a failure of the service: recorded
                sample = Sample(t0, time.monotonic() - t0, 0, None, "?", repr(exc))
            self.samples.append(sample)
            k += 1

    def since(self, t: float) -> list[Sample]:
        return [s for s in self.samples if s.started >= t]

    def wait_until(self, what: str, ok: Any, limit_s: float) -> float:
        """Seconds from now until both workers answered a page satisfying ``ok``; asserts ``limit_s``."""
        t = time.monotonic()
        while time.monotonic() - t < limit_s:
            if len({s.worker for s in self.since(t) if ok(s)}) == 2:
                return time.monotonic() - t
            time.sleep(0.05)
        tail = [(round(s.started - t, 2), s.status, s.fallback, s.worker) for s in self.since(t)][-10:]
        raise AssertionError(f"{what}: not seen from both workers within {limit_s} s; last pages {tail}")


def _stale(s: Sample) -> bool:
    return s.status == 200 and s.fallback == "stale_state"


def _start(s: Sample) -> float:
    return s.started


def _end(s: Sample) -> float:
    return s.started + s.seconds


def _fresh(s: Sample) -> bool:
    return s.status == 200 and s.fallback is None


def _write_refused(api: ApiServer, user: str, item: str) -> httpx.Response:
    r = api.request("POST", "/v1/interactions", json=interaction(user, item, uuid.uuid4().hex))
    assert r.status_code == 503, r.text
    error = r.json()["error"]
    assert error["code"] == "unavailable" and "Redis" in error["message"], error
    assert r.headers.get("retry-after") == "1"
    return r


def test_degradation_when_redis_stops_and_returns(
    data_dir: Path, trained: tuple[Path, list[str]], private_redis: RedisServer, tmp_path: Path
) -> None:
    users = trained[1]
    url = f"redis://127.0.0.1:{private_redis.port}/0?timeout={REDIS_TIMEOUT_S}"
    api = ApiServer(data_dir, tmp_path / "serve.log", redis_url=url, prefix="deg", workers=2)
    load = Load(api, users)
    threads = [threading.Thread(target=load.run, args=(k,), daemon=True) for k in range(2)]
    notes: dict[str, float] = {}
    try:
        # 1. Redis is down at boot: the API starts, is not ready, serves stale pages, refuses writes
        api.wait_up(workers=2)
        for _ in range(6):
            ready = api.request("GET", "/readyz")
            assert ready.status_code == 503 and ready.json()["checks"]["event_log"] is False, ready.text
            r, items = api.page(users[0])
            assert r.status_code == 200 and items and r.json()["fallback"] == "stale_state", r.text
        _write_refused(api, users[0], "i000001")

        # 2. Redis starts: both workers recover by themselves
        private_redis.start()
        for thread in threads:
            thread.start()
        notes["recover_after_boot_s"] = load.wait_until("fresh pages after Redis started", _fresh, 15)
        assert api.request("GET", "/readyz").status_code == 200
        kept_id = uuid.uuid4().hex  # acknowledged before the kill: must survive it (AOF always)
        kept = api.request("POST", "/v1/interactions", json=interaction(users[1], "i000002", kept_id))
        assert kept.status_code == 202, kept.text
        assert (kept.json()["accepted"], kept.json()["duplicates"]) == (1, 0)
        time.sleep(1.0)

        # 3. Redis freezes (SIGSTOP: connections hang until the socket timeout)
        frozen_at = time.monotonic()
        private_redis.signal(signal.SIGSTOP)
        notes["stale_after_freeze_s"] = load.wait_until("stale pages while Redis is frozen", _stale, 15)
        t = time.monotonic()
        _write_refused(api, users[2], "i000003")
        notes["write_refused_frozen_s"] = time.monotonic() - t
        time.sleep(2.0)
        private_redis.signal(signal.SIGCONT)
        thawed_at = time.monotonic()
        notes["recover_after_thaw_s"] = load.wait_until("fresh pages after SIGCONT", _fresh, 15)

        # 4. Redis is killed mid-run, then restarted on the same port and directory
        time.sleep(1.0)
        killed_at = time.monotonic()
        private_redis.kill()
        notes["stale_after_kill_s"] = load.wait_until("stale pages while Redis is dead", _stale, 15)
        _write_refused(api, users[2], "i000004")
        unlist = api.request("DELETE", "/v1/items/i000005")
        assert unlist.status_code == 503 and unlist.json()["error"]["code"] == "unavailable", unlist.text
        assert api.request("GET", "/readyz").status_code == 503
        time.sleep(2.0)
        private_redis.start()
        restarted_at = time.monotonic()
        notes["recover_after_restart_s"] = load.wait_until("fresh pages after the restart", _fresh, 15)
        time.sleep(0.5)
        load.stop.set()
        for thread in threads:
            thread.join(timeout=30)
            assert not thread.is_alive()

        # 5. after recovery: writes accepted, the pre-kill event survived, a new click is reflected
        again = api.request("POST", "/v1/interactions", json=interaction(users[1], "i000002", kept_id))
        assert again.status_code == 202 and again.json()["duplicates"] == 1, again.text
        user, control = f"new-{uuid.uuid4().hex[:8]}", f"control-{uuid.uuid4().hex[:8]}"
        clicked = api.page(user)[1][0]
        post = api.request("POST", "/v1/interactions", json=interaction(user, clicked, uuid.uuid4().hex))
        assert post.status_code == 202, post.text
        notes["click_reflected_s"] = wait_reflected(
            api, user, clicked, control, FRESHNESS_S, workers=2
        ).seconds
        assert api.request("GET", "/readyz").status_code == 200

        # 6. Redis refuses writes (maxmemory reached, noeviction): 503 for writes, pages stay fresh
        assert private_redis.command("CONFIG", "SET", "maxmemory", "1").startswith(b"+OK")
        refused = _write_refused(api, users[3], "i000006")
        assert "refused" in refused.json()["error"]["message"], refused.text
        for _ in range(10):
            r, items = api.page(users[3])
            assert r.status_code == 200 and items and r.json()["fallback"] is None, r.text
        assert private_redis.command("CONFIG", "SET", "maxmemory", "0").startswith(b"+OK")
        post = api.request(
            "POST", "/v1/interactions", json=interaction(users[3], "i000006", uuid.uuid4().hex)
        )
        assert post.status_code == 202, post.text

        # every page of the run was a 200: stale while Redis was away, fresh before and after
        samples = load.samples
        bad = [s for s in samples if s.status != 200]
        assert not bad, [(round(s.started - frozen_at, 2), s.status, s.error) for s in bad[:5]]
        for begin, end in ((frozen_at, thawed_at), (killed_at, restarted_at)):
            # once a worker served a stale page, every page it serves before Redis is back is stale
            for worker in {s.worker for s in samples}:
                mine = sorted((s for s in samples if s.worker == worker and begin <= s.started), key=_start)
                first = next(s for s in mine if _stale(s))
                later = [s for s in mine if s.started >= first.started + first.seconds and _end(s) < end]
                assert later and all(_stale(s) for s in later), [(s.status, s.fallback) for s in later]
        # bounded by the Redis timeout (0.5 s) and the breaker, far below the default 5 s timeout
        worst = max(s.seconds for s in samples)
        assert worst < 3.0, sorted(s.seconds for s in samples)[-5:]
        notes.update(
            pages=len(samples),
            stale_pages=sum(s.fallback == "stale_state" for s in samples),
            max_latency_s=worst,
            max_latency_frozen_s=max(s.seconds for s in samples if frozen_at <= s.started < thawed_at),
            max_latency_killed_s=max(s.seconds for s in samples if killed_at <= s.started < restarted_at),
        )
        print(
            "\n" + ", ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in notes.items())
        )
    finally:
        load.stop.set()
        for thread in threads:
            if thread.is_alive():
                thread.join(timeout=30)
        api.stop()
        if private_redis.proc is not None and private_redis.proc.poll() is None:
            private_redis.signal(signal.SIGCONT)  # a stopped server must not outlive the test


# ---- the serve configuration of the Redis URLs (no server needed) -------------------------------


@pytest.mark.parametrize(
    ("redis_url", "events", "entities"),
    [
        (
            "redis://127.0.0.1:6379/0",
            "redis://127.0.0.1:6379/0?stream=p:events&timeout=1.0",
            "redis://127.0.0.1:6379/0?stream=p:entities&timeout=1.0",
        ),
        (
            "redis://u:pw@h:6390/2?timeout=0.25",
            "redis://u:pw@h:6390/2?stream=p:events&timeout=0.25",
            "redis://u:pw@h:6390/2?stream=p:entities&timeout=0.25",
        ),
    ],
)
def test_serve_config_gives_every_redis_url_a_short_timeout(
    redis_url: str, events: str, entities: str
) -> None:
    from funnel.api.server import ServeConfig

    config = ServeConfig(Path("/tmp/data"), redis_url, prefix="p", workers=2)
    assert (config.event_log_url(), config.entity_feed_url()) == (events, entities)
    env = config.environment()
    assert (env["FUNNEL_EVENT_LOG"], env["FUNNEL_ENTITY_FEED"]) == (events, entities)


@pytest.mark.parametrize(
    ("redis_url", "message"),
    [
        ("redis://h:6379/0?stream=x", "only the query option timeout"),
        ("redis://h:6379/0?timeout=0", "positive number"),
        ("redis://h:6379/0?timeout=soon", "positive number"),
        ("redis://h:6379/0?timeout=inf", "positive number"),
        ("http://h:6379/0", "redis://host:port/db"),
    ],
)
def test_serve_config_refuses_bad_redis_urls(redis_url: str, message: str) -> None:
    from funnel.api.server import ServeConfig
    from funnel.core.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        ServeConfig(Path("/tmp/data"), redis_url).event_log_url()
