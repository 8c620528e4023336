"""``RedisStreamEventLog``: the event log on a Redis Stream, for deployments beyond one machine.

Key layout for a log named ``S`` (the ``stream=`` URL option; in Redis Cluster give it a hash tag,
``stream={events}``, so that every key below lands in one slot):

- ``S`` — the stream. The event at offset ``n`` is the entry with the explicit id ``<n+1>-0`` and
  one field ``e`` holding the event's JSON (:func:`~funnel.events.protocol.event_json`);
- ``S:seq`` — the number of stored events (the next offset), kept by the append script;
- ``S:ids`` — hash ``event_id -> offset``: the exact dedup index (never forgets, like ``file://``);
- ``S:groups`` — hash ``group -> committed offset``, the consumers' positions;
- ``S:meta`` — hash ``{format_version: 1}``, checked on open.

One Lua script per append batch (``EVALSHA``) looks every id up, ``XADD`` s the new events with
explicit ids, records their ids and bumps ``S:seq``: a batch is atomic, contiguous and
idempotent by ``event_id``, and a duplicate gets its original's offset. Explicit ids make offsets
dense and stable (Redis' own ``<ms>-<seq>`` ids are neither). ``read`` is one ``XRANGE``.

Consumer positions live in a hash, not in ``XREADGROUP``/``XACK`` state: the protocol's group is
one cursor that may be rewound for a replay, while a Redis consumer group tracks deliveries per
consumer in a pending list that only grows unless every entry is acknowledged. Each ``commit``
mirrors the cursor into a Redis consumer group of the same name (``XGROUP SETID ... ENTRIESREAD``)
so ``XINFO GROUPS S`` shows every group's lag with standard tooling (``ENTRIESREAD``: Redis >= 7.0).

Durability: ``append`` returns after Redis executed the script, which is exactly as durable as
the server's persistence — see ``docs/redis-durability.md`` (use AOF with ``appendfsync always``
for the event log). The client never retries a failed call by itself: an append retried after a
timeout could store an event without an ``event_id`` twice; the caller sees ``UnavailableError``.

Example (needs a server, so not run as a doctest)::

    log = open_event_log("redis://127.0.0.1:6379/0?stream=funnel-events")
    log.append([Interaction("u1", "i1", "click", 1_700_000_000_000, event_id="e1")])  # array([0])
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from urllib.parse import ParseResult, unquote

import numpy as np
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from funnel.core.errors import ConfigError, ConflictError, UnavailableError, ValidationError
from funnel.core.schema import Interaction
from funnel.events.protocol import Event, LogRecord, check_commit_args, check_read_args, event_json
from funnel.events.protocol import events_from_dicts as _from_dicts

FORMAT_VERSION = 1
"""Version of the stream layout above; stored in ``S:meta``."""

APPEND_LUA = """
local seq = tonumber(redis.call('GET', KEYS[2]) or '0')
local start, out = seq, {}
for i = 1, #ARGV / 2 do
  local id, orig = ARGV[2 * i - 1], false
  if id ~= '' then
    id = string.sub(id, 2)
    orig = redis.call('HGET', KEYS[3], id)
  end
  if orig then
    out[i] = tonumber(orig)
  else
    redis.call('XADD', KEYS[1], string.format('%d-0', seq + 1), 'e', ARGV[2 * i])
    if id ~= '' then redis.call('HSET', KEYS[3], id, string.format('%d', seq)) end
    out[i] = seq
    seq = seq + 1
  end
end
if seq ~= start then redis.call('SET', KEYS[2], string.format('%d', seq)) end
return out
"""
"""KEYS: stream, seq, ids. ARGV: per event ``'=' .. event_id`` (or ``''``) and its JSON."""

COMMIT_LUA = """
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
local id = ARGV[2] .. '-0'
local made = redis.pcall('XGROUP', 'CREATE', KEYS[1], ARGV[1], id, 'MKSTREAM', 'ENTRIESREAD', ARGV[2])
if type(made) == 'table' and made.err then
  redis.call('XGROUP', 'SETID', KEYS[1], ARGV[1], id, 'ENTRIESREAD', ARGV[2])
end
return 1
"""
"""KEYS: stream, groups. ARGV: group, offset."""

MAX_SCRIPT_EVENTS = 10_000
"""Events per append script call: bounds how long one call blocks the server. A larger batch is
stored as several atomic, contiguous pieces (another writer's batch may land between them)."""


@contextlib.contextmanager
def unavailable(what: str) -> Iterator[None]:
    """Turn Redis connection failures, timeouts and refusals to write into :class:`UnavailableError`.

    Refusals are the server's transient states: ``OOM`` (``maxmemory`` reached under
    ``noeviction``), ``READONLY`` (a replica), ``MASTERDOWN``, ``TRYAGAIN``, ``CLUSTERDOWN``,
    ``MISCONF`` (persistence failing), ``NOREPLICAS`` (``min-replicas-to-write``) and ``BUSY``
    (a script running too long): the call did not take effect and may be retried later.
    """
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise UnavailableError(f"{what}: Redis is unreachable: {exc}") from exc
    except _REFUSALS as exc:
        raise UnavailableError(f"{what}: Redis refused the call: {exc}") from exc
    except redis.ResponseError as exc:
        if str(exc).startswith(("MISCONF", "NOREPLICAS", "BUSY ")):
            raise UnavailableError(f"{what}: Redis refused the call: {exc}") from exc
        raise


_REFUSALS = (
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.MasterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
)


def redis_from_url(url: ParseResult, socket_timeout: float = 5.0) -> redis.Redis:
    """A ``redis.Redis`` for ``redis://[user:password@]host[:port][/db]`` (bytes replies, no retries).

    Example:
        >>> from urllib.parse import urlparse
        >>> r = redis_from_url(urlparse("redis://127.0.0.1:6390/3"))
        >>> kw = r.connection_pool.connection_kwargs
        >>> kw["host"], kw["port"], kw["db"]
        ('127.0.0.1', 6390, 3)
    """
    db_text = url.path.strip("/") or "0"
    try:
        db = int(db_text)
        port = url.port or 6379
    except ValueError:
        raise ConfigError(f"redis URLs look like redis://host:port/db, got {url.geturl()!r}") from None
    return redis.Redis(
        host=url.hostname or "127.0.0.1",
        port=port,
        db=db,
        username=unquote(url.username) if url.username else None,
        password=unquote(url.password) if url.password else None,
        socket_timeout=socket_timeout,
        socket_connect_timeout=min(socket_timeout, 2.0),
        retry=Retry(NoBackoff(), 0),
    )


class RedisStreamEventLog:
    """An :class:`~funnel.events.protocol.EventLog` on the Redis Stream ``stream``. Thread-safe."""

    persistent = True

    def __init__(self, client: redis.Redis, stream: str = "funnel:events") -> None:
        if not isinstance(stream, str) or not stream:
            raise ValidationError("must be a non-empty string", field="stream")
        self._r = client
        self.stream = stream
        self._keys = [stream, f"{stream}:seq", f"{stream}:ids"]
        self._groups = f"{stream}:groups"
        self._append = client.register_script(APPEND_LUA)
        self._commit = client.register_script(COMMIT_LUA)
        self._closed = False
        with unavailable(f"event log {stream!r}"):
            pipe = self._r.pipeline(transaction=True)
            pipe.hsetnx(f"{stream}:meta", "format_version", FORMAT_VERSION)
            pipe.hget(f"{stream}:meta", "format_version")
            found = pipe.execute()[1]
        if int(found) != FORMAT_VERSION:
            raise ConflictError(f"stream {stream!r} has format version {found!r}, expected {FORMAT_VERSION}")

    def __enter__(self) -> RedisStreamEventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisStreamEventLog(stream={self.stream!r})"

    def _check_open(self) -> None:
        if self._closed:
            raise UnavailableError("the event log is closed")

    def append(self, events: Sequence[Event]) -> np.ndarray:
        """Store ``events`` atomically per batch; one int64 offset per input (duplicates: the original's)."""
        self._check_open()
        args: list[str] = []
        for row, ev in enumerate(events, start=1):
            eid = getattr(ev, "event_id", None) if type(ev) is Interaction else None
            if eid is not None and not isinstance(eid, str):
                raise ValidationError("must be a string", field="event_id", row=row)
            try:
                args += ("" if eid is None else "=" + eid, event_json(ev))
            except ValidationError as exc:
                raise ValidationError(exc.reason, field=exc.field, row=row) from None
        out: list[int] = []
        step = 2 * MAX_SCRIPT_EVENTS
        with unavailable(f"event log {self.stream!r} append"):
            for start in range(0, len(args), step):
                out += self._append(keys=self._keys, args=args[start : start + step])
        return np.array(out, dtype=np.int64)

    def read(self, from_offset: int, max_records: int) -> list[LogRecord]:
        """Up to ``max_records`` records from ``from_offset`` on: one ``XRANGE``."""
        check_read_args(from_offset, max_records)
        self._check_open()
        if max_records == 0:
            return []
        with unavailable(f"event log {self.stream!r} read"):
            entries = self._r.xrange(self.stream, f"{int(from_offset) + 1}-0", "+", count=int(max_records))
        offsets = [int(entry_id.split(b"-", 1)[0]) - 1 for entry_id, _ in entries]
        events = _from_dicts([json.loads(fields[b"e"]) for _, fields in entries])
        return [LogRecord(off, ev) for off, ev in zip(offsets, events, strict=True)]

    def commit(self, group: str, offset: int) -> None:
        """Record that ``group`` will next read ``offset``; mirrored into a Redis consumer group."""
        self._check_open()
        check_commit_args(group, offset, self.end_offset)
        with unavailable(f"event log {self.stream!r} commit"):
            self._commit(keys=[self.stream, self._groups], args=[group, int(offset)])

    def committed(self, group: str) -> int:
        """The next offset ``group`` should read; 0 if it never committed."""
        self._check_open()
        with unavailable(f"event log {self.stream!r} committed"):
            found = self._r.hget(self._groups, group)
        return 0 if found is None else int(found)

    @property
    def end_offset(self) -> int:
        """The offset the next appended event will get (``S:seq``)."""
        self._check_open()
        with unavailable(f"event log {self.stream!r} end_offset"):
            found = self._r.get(self._keys[1])
        return 0 if found is None else int(found)

    def teardown(self) -> int:
        """Delete the stream and every key of this log (control plane); return how many existed."""
        self._check_open()
        with unavailable(f"event log {self.stream!r} teardown"):
            return int(self._r.unlink(*self._keys, self._groups, f"{self.stream}:meta"))

    def close(self) -> None:
        """Close the connection pool; later calls raise ``UnavailableError``. Idempotent."""
        if not self._closed:
            self._closed = True
            self._r.close()
