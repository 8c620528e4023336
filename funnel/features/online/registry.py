"""Online-store backends by URL: ``memory://`` and ``redis://host:port/db?prefix=name``.

``redis://`` takes ``prefix`` (the key namespace, default ``funnel``: one per tenant or test),
``timeout`` (socket timeout in seconds, default 5) and ``apply_chunk`` (events per script call);
user and password go in the URL (``redis://user:pw@host:6379/0``). Opening connects lazily: a
store for an unreachable server raises ``UnavailableError`` on its first call, not here.
Every ``open_online_store("memory://")`` is a new, empty, in-process store.

Example:
    >>> store = open_online_store("memory://")
    >>> type(store).__name__
    'MemoryOnlineStore'
    >>> store = open_online_store("redis://127.0.0.1:6390/2?prefix=tenant-a&timeout=0.5")
    >>> type(store).__name__, store.prefix
    ('RedisOnlineStore', 'tenant-a')
    >>> store.close()
    >>> open_online_store("redis://127.0.0.1/0?stream=x")
    Traceback (most recent call last):
    ...
    funnel.core.errors.ConfigError: unknown option 'stream' for redis:// online stores; known: ...
"""

from __future__ import annotations

from urllib.parse import ParseResult, parse_qs

from funnel.core.errors import ConfigError, ValidationError
from funnel.core.registry import BackendRegistry
from funnel.events.redis_log import redis_from_url
from funnel.features.online.memory import MemoryOnlineStore
from funnel.features.online.protocol import OnlineStore
from funnel.features.online.redis_store import RedisOnlineStore

ONLINE_STORES = BackendRegistry[OnlineStore]("online store")
"""The online-store backends, by URL scheme."""


def url_options(url: ParseResult, role: str, allowed: tuple[str, ...]) -> dict[str, str]:
    """The query options of ``url`` (last value wins); ``ConfigError`` for one not in ``allowed``."""
    options: dict[str, str] = {}
    for name, values in parse_qs(url.query, keep_blank_values=True).items():
        if name not in allowed:
            raise ConfigError(
                f"unknown option {name!r} for {url.scheme}:// {role}s; known: {', '.join(allowed)}"
            )
        options[name] = values[-1]
    return options


def _number(options: dict[str, str], name: str, kind: type[float] | type[int], default: float) -> float:
    try:
        return kind(options.get(name, default))
    except ValueError:
        raise ConfigError(f"online store option {name} must be a number, got {options[name]!r}") from None


def _open_memory(url: ParseResult) -> OnlineStore:
    url_options(url, "online store", ())
    return MemoryOnlineStore()


def _open_redis(url: ParseResult) -> OnlineStore:
    options = url_options(url, "online store", ("prefix", "timeout", "apply_chunk"))
    client = redis_from_url(url, socket_timeout=_number(options, "timeout", float, 5.0))
    chunk = int(_number(options, "apply_chunk", int, 1000))
    try:
        return RedisOnlineStore(client, prefix=options.get("prefix", "funnel"), apply_chunk=chunk)
    except ValidationError as exc:
        client.close()
        raise ConfigError(f"online store option {exc}") from None


ONLINE_STORES.register("memory", _open_memory)
ONLINE_STORES.register("redis", _open_redis)


def open_online_store(url: str) -> OnlineStore:
    """Open the online store at ``url`` (``memory://``, ``redis://host:port/db?prefix=...``).

    Raises ``ConfigError`` for an unknown scheme or option; see the module docstring for an example.
    """
    return ONLINE_STORES.open(url)
