"""``python -m funnel serve`` as a subprocess, for the tests that talk to the API over real HTTP.

Shared by ``test_api_http.py`` (the embedded single-process server) and ``test_api_redis.py``
(several uvicorn workers on Redis):

* :class:`ApiServer` starts the real command on a free loopback port in its own session (so the
  server and its uvicorn workers can be signalled as one process group), waits for ``/healthz``,
  sends requests on a new connection each (so the kernel hands them to any worker; the worker is
  read from the ``x-funnel-worker`` response header), and stops or SIGKILLs it.
* :func:`wait_reflected` measures how long a click takes to show in its user's page.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

BOOT_S = 90.0
"""Time allowed for ``/healthz`` to answer: uvicorn workers import the engine on a busy 2-core machine."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ApiServer:
    """``python -m funnel serve`` in its own session; stopped (and reaped) by :meth:`stop` or :meth:`kill`.

    Without ``redis_url`` the server is the embedded mode: one process, the file event log in
    ``<data_dir>/events``, the entity feed in memory and the retrain worker in a thread.
    ``extra_args`` go to ``funnel serve`` as well (e.g. ``--served-feature-sample 1``).
    """

    def __init__(
        self,
        data_dir: Path,
        log_path: Path,
        *,
        redis_url: str | None = None,
        prefix: str = "funnel",
        workers: int = 1,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.data_dir, self.port, self.log_path = data_dir, free_port(), log_path
        self.base = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("FUNNEL_")}  # open keys on loopback
        args = [sys.executable, "-m", "funnel", "serve", "--data-dir", str(data_dir)]
        args += ["--port", str(self.port)]
        if redis_url is not None:
            args += ["--redis", redis_url, "--prefix", prefix, "--workers", str(workers)]
        args += list(extra_args)
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            args, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.workers: set[str] = set()
        self._local = threading.local()
        self._clients: list[httpx.Client] = []
        self._clients_lock = threading.Lock()

    def request(self, method: str, path: str, timeout: float = 10.0, **kw: Any) -> httpx.Response:
        """One request on a new connection (so the kernel hands it to any worker)."""
        client = getattr(self._local, "client", None)
        if client is None:  # one client per thread, without keep-alive: a connection per request
            no_keepalive = httpx.Limits(max_keepalive_connections=0)
            client = self._local.client = httpx.Client(base_url=self.base, limits=no_keepalive)
            with self._clients_lock:
                self._clients.append(client)
        response = client.request(method, path, timeout=timeout, **kw)
        self.workers.add(response.headers.get("x-funnel-worker", "?"))
        return response

    def page(self, user: str, limit: int = 10, **params: Any) -> tuple[httpx.Response, list[str]]:
        """``GET /v1/recommendations`` for ``user`` (``params``: country, cursor, ...) and its item ids."""
        r = self.request("GET", "/v1/recommendations", params={"user_id": user, "limit": limit, **params})
        return r, [it["item_id"] for it in r.json()["items"]] if r.status_code == 200 else []

    def wait_up(self, workers: int = 1, boot_s: float = BOOT_S) -> float:
        """Seconds until ``/healthz`` answered from ``workers`` distinct processes; asserts ``boot_s``."""
        started = time.monotonic()
        while time.monotonic() - started < boot_s:
            assert self.proc.poll() is None, f"funnel serve exited: {self.log_tail()}"
            try:
                up = self.request("GET", "/healthz", timeout=5).status_code == 200
                if up and len(self.workers) >= workers:
                    return time.monotonic() - started
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError(f"{workers} worker(s) did not answer within {boot_s} s: {self.log_tail()}")

    def _close_clients(self) -> None:
        with self._clients_lock:
            for client in self._clients:
                client.close()
            self._clients.clear()

    def stop(self) -> None:
        """SIGTERM (uvicorn's supervisor stops its workers); SIGKILL the session if that takes over 20 s."""
        self._close_clients()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()

    def kill(self) -> None:
        """SIGKILL the server's process group (its own session: the server and any workers), and reap it."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def log_tail(self) -> str:
        """The last 3000 characters of the server's output."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-3000:]


def interaction(user: str, item: str, event_id: str, action: str = "click") -> dict[str, Any]:
    """The body of one ``POST /v1/interactions`` event."""
    return {"user_id": user, "item_id": item, "action": action, "event_id": event_id}


@dataclass(frozen=True)
class Reflected:
    """How a click showed: ``seconds`` from the call to the first page without the item, ``polls`` pages."""

    seconds: float
    polls: int


def wait_reflected(
    api: ApiServer,
    user: str,
    item: str,
    control: str,
    within_s: float,
    *,
    workers: int = 1,
    limit: int = 10,
    since: float | None = None,
    **params: Any,
) -> Reflected:
    """Poll until ``user``'s page lacks ``item`` (just clicked: seen); asserts it within ``within_s``.

    Afterwards, every page must lack it while ``control`` (who never saw it, same ``params``)
    still gets it, until ``workers`` distinct processes answered: the change depends on the
    interaction, not on something else moving. ``since``: the ``time.monotonic()`` the clock starts
    from (default: now, i.e. after the interaction's 202).
    """
    posted, polls = time.monotonic() if since is None else since, 0
    while True:
        r, items = api.page(user, limit, **params)
        polls += 1
        assert r.status_code == 200, r.text
        waited = time.monotonic() - posted
        if item not in items:
            break
        assert waited < within_s, f"{item} still in {user}'s page {waited:.1f} s after the click"
        time.sleep(0.05)
    answered: set[str] = set()
    for _ in range(200):
        r, items = api.page(user, limit, **params)
        assert r.status_code == 200 and item not in items, (r.headers.get("x-funnel-worker"), items)
        rc, control_items = api.page(control, limit, **params)
        assert rc.status_code == 200 and item in control_items, control_items
        answered |= {r.headers["x-funnel-worker"], rc.headers["x-funnel-worker"]}
        if len(answered) >= workers:
            return Reflected(waited, polls)
    raise AssertionError(f"only workers {answered} answered 400 requests")
