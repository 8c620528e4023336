"""Event-log backends by URL: ``memory://``, ``file:///abs/path`` and ``redis://host:port/db?stream=S``.

``file://`` URLs take options as query parameters: ``segment_bytes`` and ``dedup_window``
(see :class:`~funnel.events.file_log.FileEventLog`); ``memory://`` takes ``dedup_window``;
``redis://`` takes ``stream`` (default ``funnel:events``) and ``timeout`` (seconds, default 5)
(see :class:`~funnel.events.redis_log.RedisStreamEventLog`).
Every ``open_event_log("memory://")`` is a new, empty, in-process log.

Example:
    >>> import tempfile
    >>> log = open_event_log("memory://")
    >>> type(log).__name__, log.persistent
    ('MemoryEventLog', False)
    >>> log = open_event_log(f"file://{tempfile.mkdtemp()}?segment_bytes=1048576")
    >>> type(log).__name__, log.persistent, log.segment_bytes
    ('FileEventLog', True, 1048576)
    >>> log.close()
    >>> open_event_log("file://relative/dir")
    Traceback (most recent call last):
    ...
    funnel.core.errors.ConfigError: file:// event log URLs need an absolute path ...
    >>> open_event_log("redis://127.0.0.1:6379/0?prefix=x")  # checked before connecting
    Traceback (most recent call last):
    ...
    funnel.core.errors.ConfigError: unknown option 'prefix' for redis:// event logs; known: stream, timeout
"""

from __future__ import annotations

from urllib.parse import ParseResult, parse_qs, unquote

from funnel.core.errors import ConfigError
from funnel.core.registry import BackendRegistry
from funnel.events.file_log import FileEventLog
from funnel.events.memory_log import MemoryEventLog
from funnel.events.protocol import EventLog
from funnel.events.redis_log import RedisStreamEventLog, redis_from_url

EVENT_LOGS = BackendRegistry[EventLog]("event log")
"""The event-log backends, by URL scheme."""


def _int_options(url: ParseResult, allowed: tuple[str, ...]) -> dict[str, int]:
    options: dict[str, int] = {}
    for name, values in parse_qs(url.query, keep_blank_values=True).items():
        if name not in allowed:
            raise ConfigError(
                f"unknown option {name!r} for {url.scheme}:// event logs; known: {', '.join(allowed)}"
            )
        try:
            options[name] = int(values[-1])
        except ValueError:
            raise ConfigError(f"event log option {name} must be an integer, got {values[-1]!r}") from None
    return options


def _open_memory(url: ParseResult) -> EventLog:
    return MemoryEventLog(**_int_options(url, ("dedup_window",)))


def _open_file(url: ParseResult) -> EventLog:
    path = unquote(url.path)
    if url.netloc not in ("", "localhost") or not path.startswith("/"):
        raise ConfigError(
            f"file:// event log URLs need an absolute path (file:///abs/path), got {url.geturl()!r}"
        )
    return FileEventLog(path, **_int_options(url, ("segment_bytes", "dedup_window")))


def _open_redis(url: ParseResult) -> EventLog:
    options = dict(parse_qs(url.query, keep_blank_values=True))
    unknown = sorted(set(options) - {"stream", "timeout"})
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]!r} for redis:// event logs; known: stream, timeout")
    try:
        timeout = float(options.get("timeout", ["5"])[-1])
    except ValueError:
        raise ConfigError(
            f"event log option timeout must be a number, got {options['timeout'][-1]!r}"
        ) from None
    stream = options.get("stream", ["funnel:events"])[-1]
    return RedisStreamEventLog(redis_from_url(url, socket_timeout=timeout), stream=stream)


EVENT_LOGS.register("memory", _open_memory)
EVENT_LOGS.register("file", _open_file)
EVENT_LOGS.register("redis", _open_redis)


def open_event_log(url: str) -> EventLog:
    """Open the event log at ``url`` (``memory://``, ``file:///abs/path``, ``redis://host:port/db?stream=S``).

    Raises ``ConfigError`` for an unknown scheme or a bad URL; see the module docstring for an
    example.
    """
    return EVENT_LOGS.open(url)
