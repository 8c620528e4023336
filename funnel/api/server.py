"""``funnel serve``: run the API under uvicorn, embedded (one process) or on Redis (several workers).

* **Embedded** (no Redis given): one process, the event log in ``<data-dir>/events`` (``file://``,
  fsync'd), the entity feed in memory, and the :class:`~funnel.api.worker.Worker` in a thread.
  The file log has a single writer, so the embedded mode has one API worker.
* **Redis** (``--redis redis://host:port/db``): the event log and the entity feed are Redis
  Streams (``<prefix>:events``, ``<prefix>:entities``) shared by ``--workers`` uvicorn processes;
  run ``funnel worker`` beside them for retraining. Every Redis call of the API gives up after
  ``redis_timeout_s`` (default 1 s; ``--redis redis://host:port/db?timeout=0.5`` sets it): a
  hung server then costs a request at most about that long before the circuit breaker opens and
  pages are served from the state held (``fallback="stale_state"``).

Every response carries ``x-funnel-worker: <pid>``: which uvicorn process answered. With several
workers, ``serve`` creates a shared connection table (``FUNNEL_BALANCE_FILE``) through which a
process holding more than its share of keep-alive connections closes one now and then
(:mod:`funnel.api.balance`).

Served-feature logging: every process samples ``served_feature_sample`` of its recommendation
requests (default 1%, by request id) and appends their scored feature rows to
``<data-dir>/served_features/`` (what ``funnel report`` compares with offline recomputation for
the skew alarm); processes share the folder (whole-batch ``O_APPEND`` writes).

Each uvicorn process builds its app from the environment (``FUNNEL_DATA_DIR``,
``FUNNEL_EVENT_LOG``, ``FUNNEL_ENTITY_FEED``, ``FUNNEL_API_KEYS_FILE``, ``FUNNEL_WORKER``,
``FUNNEL_SERVED_FEATURE_SAMPLE``, ``FUNNEL_BALANCE_FILE``) through :func:`app_from_env`, so
``uvicorn --factory funnel.api.server:app_from_env`` works as well.

Threads: each process caps its BLAS libraries at ``FUNNEL_BLAS_THREADS`` threads (default 1).
A request's matrix products are small (one user's vector against a thousand candidates), so a
second BLAS thread only spins: measured on the 8k-item world (``python -m benchmarks.bench_api``
reference loop, single process), 49 ms of CPU per request with OpenBLAS's default of 2 threads
against 25 ms with 1, and a slower median. Parallelism comes from the uvicorn workers instead.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from funnel.core.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeConfig:
    """Where the state lives and how the processes are laid out."""

    data_dir: Path
    redis_url: str | None = None
    prefix: str = "funnel"
    workers: int = 1
    api_keys_file: Path | None = None
    run_worker: bool = True
    redis_timeout_s: float = 1.0
    """Socket timeout of every Redis call (``?timeout=`` on ``redis_url`` overrides it)."""
    served_feature_sample: float = 0.01
    """Share of recommendation requests whose scored feature rows go to ``<data_dir>/served_features/``."""

    def event_log_url(self) -> str:
        """``redis://...?stream=<prefix>:events&timeout=T``, or the data directory's ``file://`` log."""
        if self.redis_url:
            return _with_stream(self.redis_url, f"{self.prefix}:events", self.redis_timeout_s)
        return f"file://{(self.data_dir / 'events').resolve()}"

    def entity_feed_url(self) -> str:
        """``redis://...?stream=<prefix>:entities&timeout=T``, or ``memory://`` (one process)."""
        if self.redis_url:
            return _with_stream(self.redis_url, f"{self.prefix}:entities", self.redis_timeout_s)
        return "memory://"

    def environment(self) -> dict[str, str]:
        """The variables :func:`app_from_env` reads."""
        env = {
            "FUNNEL_DATA_DIR": str(self.data_dir.resolve()),
            "FUNNEL_EVENT_LOG": self.event_log_url(),
            "FUNNEL_ENTITY_FEED": self.entity_feed_url(),
            "FUNNEL_WORKER": "1" if self.run_worker and not self.redis_url else "0",
            "FUNNEL_SERVED_FEATURE_SAMPLE": repr(float(self.served_feature_sample)),
        }
        if self.api_keys_file is not None:
            env["FUNNEL_API_KEYS_FILE"] = str(self.api_keys_file.resolve())
        return env


def _with_stream(redis_url: str, stream: str, timeout_s: float) -> str:
    parsed = urlparse(redis_url)
    if parsed.scheme != "redis":
        raise ConfigError(f"--redis takes a redis://host:port/db URL, got {redis_url!r}")
    options = parse_qs(parsed.query, keep_blank_values=True)
    if set(options) - {"timeout"}:
        raise ConfigError(
            f"--redis takes only the query option timeout (--prefix names the streams), got {redis_url!r}"
        )
    timeout = options.get("timeout", [str(timeout_s)])[-1]
    try:
        ok = 0 < float(timeout) < float("inf")
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError(f"--redis option timeout must be a positive number of seconds, got {timeout!r}")
    return f"{parsed._replace(query='').geturl()}?stream={stream}&timeout={timeout}"


def check_config(config: ServeConfig, host: str) -> None:
    """Refuse layouts that cannot work: several workers on the file log, open keys on a public address."""
    if config.workers > 1 and not config.redis_url:
        raise ConfigError("several --workers share state through Redis: give --redis redis://host:port/db")
    if config.workers < 1:
        raise ConfigError("--workers must be at least 1")
    if not 0.0 <= config.served_feature_sample <= 1.0:
        raise ConfigError(f"--served-feature-sample must be in [0, 1], got {config.served_feature_sample!r}")
    from funnel.api.auth import ApiKeys

    keys = ApiKeys.load(config.api_keys_file)
    if keys.open and not _loopback(host):
        raise ConfigError(
            f"refusing to serve {host} without API keys: set FUNNEL_API_KEYS or --api-keys FILE "
            "(or bind 127.0.0.1)"
        )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class WorkerHeader:
    """Pure ASGI middleware adding ``x-funnel-worker: <pid>`` to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app, self.value = app, str(os.getpid()).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; tag the response start."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-funnel-worker", self.value)]
            await send(message)

        await self.app(scope, receive, tagged)


def app_from_env() -> FastAPI:
    """The app of one uvicorn process, configured by the ``FUNNEL_*`` environment variables."""
    from funnel.api.app import create_app
    from funnel.api.auth import ApiKeys
    from funnel.api.entity_feed import open_entity_feed
    from funnel.api.worker import Worker
    from funnel.engine import Engine

    limit_blas_threads()
    data_dir = os.environ.get("FUNNEL_DATA_DIR", "./funnel-data")
    sample = served_sample_from_env()
    engine = Engine(data_dir, event_log_url=os.environ.get("FUNNEL_EVENT_LOG"), served_feature_sample=sample)
    feed = open_entity_feed(os.environ.get("FUNNEL_ENTITY_FEED", "memory://"))
    keys_file = os.environ.get("FUNNEL_API_KEYS_FILE")
    app = create_app(engine, feed, ApiKeys.load(keys_file) if keys_file else ApiKeys.load())
    app.add_middleware(WorkerHeader)
    balance = os.environ.get("FUNNEL_BALANCE_FILE", "").strip()
    if balance:  # several processes on one socket: even out their keep-alive connections
        from funnel.api.balance import BalanceConnections

        app.add_middleware(BalanceConnections, path=balance)
    # the served-feature log flushes its queue at exit itself (atexit, once it has written)
    if os.environ.get("FUNNEL_WORKER") == "1":
        stop = threading.Event()
        worker = Worker(engine)
        thread = threading.Thread(target=worker.run, args=(stop,), name="funnel-worker", daemon=True)

        @app.on_event("startup")
        def _start_worker() -> None:
            thread.start()

        @app.on_event("shutdown")
        def _stop_worker() -> None:
            stop.set()

    return app


_BLAS_LIMITS: list[object] = []  # the active threadpool limit (kept alive for the process)


def limit_blas_threads() -> int:
    """Cap this process's BLAS thread pools at ``FUNNEL_BLAS_THREADS`` (default 1); returns the cap.

    ``0`` leaves the libraries' own defaults (one thread per core).
    """
    raw = os.environ.get("FUNNEL_BLAS_THREADS", "").strip() or "1"
    try:
        threads = int(raw)
    except ValueError:
        threads = -1
    if threads < 0:
        raise ConfigError(f"FUNNEL_BLAS_THREADS must be an integer >= 0, got {raw!r}")
    if threads > 0:
        from threadpoolctl import threadpool_limits

        _BLAS_LIMITS[:] = [threadpool_limits(threads, "blas")]
    return threads


def served_sample_from_env() -> float:
    """``FUNNEL_SERVED_FEATURE_SAMPLE`` (a share in [0, 1]), else the engine's default."""
    from funnel.engine import SERVED_FEATURE_SAMPLE

    raw = os.environ.get("FUNNEL_SERVED_FEATURE_SAMPLE", "").strip()
    if not raw:
        return SERVED_FEATURE_SAMPLE
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"FUNNEL_SERVED_FEATURE_SAMPLE must be a number in [0, 1], got {raw!r}")
    return value


def serve(config: ServeConfig, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run uvicorn with ``config``'s app (blocks until interrupted)."""
    import uvicorn

    check_config(config, host)
    os.environ.update(config.environment())
    balance = None
    if config.workers > 1:  # the processes' connection counts (funnel.api.balance)
        shm = Path("/dev/shm")
        fd, balance = tempfile.mkstemp(prefix="funnel-balance-", dir=shm if shm.is_dir() else None)
        os.close(fd)
        os.environ["FUNNEL_BALANCE_FILE"] = balance
    try:
        uvicorn.run(
            "funnel.api.server:app_from_env",
            factory=True,
            host=host,
            port=port,
            workers=config.workers,
            log_level="warning",
            access_log=False,
        )
    finally:
        if balance is not None:
            Path(balance).unlink(missing_ok=True)
