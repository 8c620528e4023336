"""Shared test fixtures: access to the Redis server at 127.0.0.1:6379 for tests marked ``redis``.

A test marked ``redis`` (directly or through a ``pytest.param(..., marks=pytest.mark.redis)``)
runs only when the server answers ``PING``. When it does not, the test is skipped with the reason
if the environment variable ``CI`` is unset, and FAILS if ``CI`` is set: CI must never go green by
silently skipping the Redis backends.

Isolation on the shared server: every test gets its own namespace from ``redis_namespace``
(``funnel-test-<random>``), uses it as key prefix / stream name in DB :data:`REDIS_DB`, and the
fixture deletes every key starting with it afterwards (``SCAN`` + ``UNLINK``, never ``FLUSHDB``).
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator

import pytest

REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
REDIS_DB = 15
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"
"""The shared test server and database; tests add ``?prefix=`` / ``?stream=`` namespaces."""


def _client():  # type: ignore[no-untyped-def]
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis(
        host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
    )


@functools.cache
def redis_unreachable_reason() -> str | None:
    """``None`` when the shared Redis answers PING, else why not (probed once per session)."""
    try:
        client = _client()
    except ImportError as exc:  # pragma: no cover - redis is a dependency
        return f"redis-py is not installed: {exc}"
    try:
        client.ping()
    except Exception as exc:
        return f"Redis at {REDIS_HOST}:{REDIS_PORT} is unreachable: {exc}"
    finally:
        client.close()
    return None


def require_redis(what: str = "Redis") -> None:
    """Skip (``CI`` unset) or fail (``CI`` set) the running test when the shared Redis is down."""
    reason = redis_unreachable_reason()
    if reason is None:
        return
    if "CI" in os.environ:
        pytest.fail(f"{what} is required under CI={os.environ['CI']!r}: {reason}", pytrace=False)
    pytest.skip(f"{reason} (set CI=true to make this a failure)")


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Gate every test marked ``redis`` on the shared server."""
    if item.get_closest_marker("redis") is not None:
        require_redis()


def delete_namespace(namespace: str) -> int:
    """Delete every key of DB ``REDIS_DB`` starting with ``namespace``; return how many."""
    pattern = "".join("\\" + c if c in "*?[]\\" else c for c in namespace) + "*"
    client = _client()
    deleted = 0
    try:
        keys = list(client.scan_iter(match=pattern, count=1000))
        for start in range(0, len(keys), 1000):
            deleted += client.unlink(*keys[start : start + 1000])
    finally:
        client.close()
    return deleted


@pytest.fixture
def redis_namespace() -> Iterator[str]:
    """A unique key prefix on the shared Redis; every key starting with it is deleted afterwards."""
    namespace = f"funnel-test-{uuid.uuid4().hex[:12]}"
    yield namespace
    if redis_unreachable_reason() is None:
        delete_namespace(namespace)


@pytest.fixture(scope="session")
def api_data_template(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A data directory trained once per session for the HTTP API tests: copy it, never write to it.

    Synthetic world of 60 users, 80 items (20 categories, region and age limits), 3000 interactions
    (seed 1), trained with ``model="auto"``: retrieval + ranker + re-ranker and a baseline (a few
    seconds). ``shutil.copytree(api_data_template, dest)`` gives a test its own writable copy.
    """
    from funnel.data.synthetic import SyntheticConfig, generate
    from funnel.engine import Engine

    ds = generate(SyntheticConfig(n_users=60, n_items=80, n_interactions=3000, seed=1))
    path = tmp_path_factory.mktemp("api-template") / "data"
    engine = Engine(path)
    engine.import_items(ds.items)
    engine.import_users(ds.users)
    engine.import_interactions(ds.interactions)
    engine.train(model="auto")
    engine.close()
    return path
