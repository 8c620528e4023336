"""``funnel serve``: run the API under uvicorn, embedded (one process) or on Redis (several workers).

* **Embedded** (no Redis given): one process, the event log in ``<data-dir>/events`` (``file://``,
  fsync'd), the entity feed in memory, and the :class:`~funnel.api.worker.Worker` in a thread.
  The file log has a single writer, so the embedded mode has one API worker.
* **Redis** (``--redis redis://host:port/db``): the event log and the entity feed are Redis
  Streams (``<prefix>:events``, ``<prefix>:entities``) shared by ``--workers`` uvicorn processes;
  run ``funnel worker`` beside them for retraining.

Each uvicorn process builds its app from the environment (``FUNNEL_DATA_DIR``,
``FUNNEL_EVENT_LOG``, ``FUNNEL_ENTITY_FEED``, ``FUNNEL_API_KEYS_FILE``, ``FUNNEL_WORKER``) through
:func:`app_from_env`, so ``uvicorn --factory funnel.api.server:app_from_env`` works as well.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from fastapi import FastAPI

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

    def event_log_url(self) -> str:
        """``redis://...?stream=<prefix>:events``, or the data directory's ``file://`` log."""
        if self.redis_url:
            return _with_stream(self.redis_url, f"{self.prefix}:events")
        return f"file://{(self.data_dir / 'events').resolve()}"

    def entity_feed_url(self) -> str:
        """``redis://...?stream=<prefix>:entities``, or ``memory://`` (one process)."""
        return _with_stream(self.redis_url, f"{self.prefix}:entities") if self.redis_url else "memory://"

    def environment(self) -> dict[str, str]:
        """The variables :func:`app_from_env` reads."""
        env = {
            "FUNNEL_DATA_DIR": str(self.data_dir.resolve()),
            "FUNNEL_EVENT_LOG": self.event_log_url(),
            "FUNNEL_ENTITY_FEED": self.entity_feed_url(),
            "FUNNEL_WORKER": "1" if self.run_worker and not self.redis_url else "0",
        }
        if self.api_keys_file is not None:
            env["FUNNEL_API_KEYS_FILE"] = str(self.api_keys_file.resolve())
        return env


def _with_stream(redis_url: str, stream: str) -> str:
    parsed = urlparse(redis_url)
    if parsed.scheme != "redis":
        raise ConfigError(f"--redis takes a redis://host:port/db URL, got {redis_url!r}")
    if parsed.query:
        raise ConfigError(f"--redis takes no query options (--prefix names the streams), got {redis_url!r}")
    return f"{redis_url}?stream={stream}"


def check_config(config: ServeConfig, host: str) -> None:
    """Refuse layouts that cannot work: several workers on the file log, open keys on a public address."""
    if config.workers > 1 and not config.redis_url:
        raise ConfigError("several --workers share state through Redis: give --redis redis://host:port/db")
    if config.workers < 1:
        raise ConfigError("--workers must be at least 1")
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


def app_from_env() -> FastAPI:
    """The app of one uvicorn process, configured by the ``FUNNEL_*`` environment variables."""
    from funnel.api.app import create_app
    from funnel.api.auth import ApiKeys
    from funnel.api.entity_feed import open_entity_feed
    from funnel.api.worker import Worker
    from funnel.engine import Engine

    data_dir = os.environ.get("FUNNEL_DATA_DIR", "./funnel-data")
    engine = Engine(data_dir, event_log_url=os.environ.get("FUNNEL_EVENT_LOG"))
    feed = open_entity_feed(os.environ.get("FUNNEL_ENTITY_FEED", "memory://"))
    keys_file = os.environ.get("FUNNEL_API_KEYS_FILE")
    app = create_app(engine, feed, ApiKeys.load(keys_file) if keys_file else ApiKeys.load())
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


def serve(config: ServeConfig, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Run uvicorn with ``config``'s app (blocks until interrupted)."""
    import uvicorn

    check_config(config, host)
    os.environ.update(config.environment())
    uvicorn.run(
        "funnel.api.server:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=config.workers,
        log_level="warning",
        access_log=False,
    )
