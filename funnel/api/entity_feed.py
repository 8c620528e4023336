"""Entity feeds: catalogue and user changes made through the API, seen by every API worker.

``PUT /v1/items/{id}``, ``DELETE /v1/items/{id}`` and ``PUT /v1/users/{id}`` write the lake (the
durable copy that the next training reads) and append a change here. Every worker applies the
feed before it serves a request, so an item unlisted through one worker is never returned by any
worker once the DELETE call has returned.

Backends by URL (one :class:`~funnel.core.registry.BackendRegistry`): ``memory://`` (one
process: the embedded mode) and ``redis://host:port/db?stream=S`` (a Redis Stream; default
stream ``funnel:entities``, ``timeout`` in seconds).

A change is ``(kind, id, data)``: kind ``item`` (``data`` is the item's fields), ``unlist``,
``user`` (``data`` holds the user's attributes) or ``experiment`` (``data`` is the whole
experiment record: :mod:`funnel.api.experiments`). ``read(after)`` returns the changes after the
opaque position ``after`` and the new position.

Example:
    >>> feed = open_entity_feed("memory://")
    >>> pos = feed.append([EntityChange("unlist", "i9", {})])
    >>> changes, pos2 = feed.read("")
    >>> [(c.kind, c.id) for c in changes], feed.read(pos2)[0]
    ([('unlist', 'i9')], [])
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import ParseResult, parse_qs

from funnel.core.errors import ConfigError
from funnel.core.registry import BackendRegistry
from funnel.events.redis_log import redis_from_url, unavailable

KINDS = ("item", "unlist", "user", "experiment")


@dataclass(frozen=True)
class EntityChange:
    """One change: ``kind`` (item | unlist | user | experiment), the entity ``id`` and its ``data``."""

    kind: str
    id: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """Compact JSON form."""
        return json.dumps({"k": self.kind, "i": self.id, "d": self.data}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | bytes) -> EntityChange:
        """Inverse of :meth:`to_json`."""
        raw = json.loads(text)
        return cls(raw["k"], raw["i"], raw["d"])


class EntityFeed(Protocol):
    """An append-only feed of entity changes with opaque read positions."""

    def append(self, changes: Sequence[EntityChange]) -> str:
        """Append ``changes``; returns the position after them (durable as the backend is)."""
        ...

    def read(self, after: str) -> tuple[list[EntityChange], str]:
        """Changes after position ``after`` (``""``: from the start) and the new position."""
        ...


class MemoryEntityFeed:
    """The in-process feed (one process)."""

    def __init__(self) -> None:
        self._changes: list[EntityChange] = []
        self._lock = threading.Lock()

    def append(self, changes: Sequence[EntityChange]) -> str:
        """See :class:`EntityFeed`."""
        with self._lock:
            self._changes.extend(changes)
            return str(len(self._changes))

    def read(self, after: str) -> tuple[list[EntityChange], str]:
        """See :class:`EntityFeed`."""
        start = int(after or 0)
        with self._lock:
            out = self._changes[start:]
            return out, str(start + len(out))


class RedisEntityFeed:
    """The feed on a Redis Stream (entries with one field ``c``: the change's JSON)."""

    def __init__(self, client: Any, stream: str = "funnel:entities") -> None:
        self._r, self.stream = client, stream

    def append(self, changes: Sequence[EntityChange]) -> str:
        """See :class:`EntityFeed`."""
        if not changes:  # the current end ("" would mean "from the start": a reader re-applies all)
            with unavailable(f"entity feed {self.stream!r}"):
                last = self._r.xrevrange(self.stream, max="+", min="-", count=1)
            return last[0][0].decode() if last else ""
        with unavailable(f"entity feed {self.stream!r}"):
            pipe = self._r.pipeline(transaction=True)
            for change in changes:
                pipe.xadd(self.stream, {"c": change.to_json()})
            ids = pipe.execute()
        return ids[-1].decode() if ids else ""

    def read(self, after: str) -> tuple[list[EntityChange], str]:
        """See :class:`EntityFeed`."""
        with unavailable(f"entity feed {self.stream!r}"):
            rows = self._r.xrange(self.stream, min=f"({after}" if after else "-", max="+", count=10_000)
        if not rows:
            return [], after
        return [EntityChange.from_json(fields[b"c"]) for _, fields in rows], rows[-1][0].decode()


ENTITY_FEEDS = BackendRegistry[EntityFeed]("entity feed")
"""The entity-feed backends, by URL scheme."""


def _open_redis(url: ParseResult) -> EntityFeed:
    options = parse_qs(url.query)
    unknown = sorted(set(options) - {"stream", "timeout"})
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]!r} for redis:// entity feeds; known: stream, timeout")
    try:
        timeout = float(options.get("timeout", ["5"])[-1])
    except ValueError:
        raise ConfigError(
            f"entity feed option timeout must be a number, got {options['timeout'][-1]!r}"
        ) from None
    stream = options.get("stream", ["funnel:entities"])[-1]
    return RedisEntityFeed(redis_from_url(url, socket_timeout=timeout), stream)


ENTITY_FEEDS.register("memory", lambda url: MemoryEntityFeed())
ENTITY_FEEDS.register("redis", _open_redis)


def open_entity_feed(url: str) -> EntityFeed:
    """The entity feed at ``url`` (``memory://`` or ``redis://...``); see the module docstring."""
    return ENTITY_FEEDS.open(url)
