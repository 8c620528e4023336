"""Keep-alive connections spread evenly over the uvicorn processes of one ``funnel serve``.

The processes share one listening socket, and each accepts what is pending when it wakes: a
client opening a few keep-alive connections at once often lands most of them, sometimes all, on
one process, and stays there. On a CPU-bound server that process then queues more requests than
the others and sets the p99 (``docs/serving.md``, Load: 4/4, 3/5, 2/6 and 8/0 splits of 8
connections over 2 processes, p99 from 59 to 179 ms).

Each process counts the connections it served in the last second (by client address and port)
and publishes the count (on each request, and every 0.5 s from a thread, so that an idle process
still counts) in a small shared table (:class:`ConnectionTable`, a memory-mapped file
named by ``FUNNEL_BALANCE_FILE``). A process holding more than its share, ``ceil(total /
processes)``, answers one request with ``Connection: close`` (at most one every 0.2 s): the
client reconnects, and the new connection lands on whichever process accepts it first. Shedding
stops once no process is over its share. A closed keep-alive connection after a complete
response is ordinary HTTP: clients reconnect without an error.

Example:
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "balance")
    >>> a = ConnectionBalancer(ConnectionTable(path, pid=1, now=100.0))
    >>> b = ConnectionBalancer(ConnectionTable(path, pid=2, now=100.0))
    >>> b.should_close(("10.0.0.1", 4), now=100.0)
    False
    >>> [a.should_close(("10.0.0.1", port), now=100.0) for port in (1, 2, 3)]  # 3 > ceil(4 / 2)
    [False, False, True]
    >>> a.should_close(("10.0.0.1", 1), now=100.1)  # at most one closed every 0.2 s
    False
"""

from __future__ import annotations

import fcntl
import math
import mmap
import os
import struct
import threading
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

SLOTS = 64
"""Processes one table holds (``funnel serve --workers`` allows 64)."""
_SLOT = struct.Struct("<qqd")  # pid, connections, time of the last update (epoch s)
STALE_S = 2.0
"""A slot not updated for this long belongs to no live process (it is skipped, then reused)."""
CONNECTION_IDLE_S = 1.0
"""A connection without a request for this long no longer counts."""
SHED_INTERVAL_S = 0.2
"""At most one connection closed per process per interval."""
HEARTBEAT_S = 0.5
"""How often a process publishes its count without requests (well under :data:`STALE_S`)."""


class ConnectionTable:
    """A fixed table of ``(pid, connections, updated)`` slots in a memory-mapped file.

    Each process claims one slot (a free or stale one, under an exclusive ``flock`` of the file)
    and writes only that slot; everyone reads all of them. A torn read of another process's slot
    costs one wrong count for one request, nothing more.
    """

    def __init__(
        self, path: str | os.PathLike[str], pid: int | None = None, now: float | None = None
    ) -> None:
        self.pid = os.getpid() if pid is None else pid
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if os.fstat(fd).st_size < SLOTS * _SLOT.size:
                os.ftruncate(fd, SLOTS * _SLOT.size)
            self._map = mmap.mmap(fd, SLOTS * _SLOT.size)
            self.slot = self._claim(time.time() if now is None else now)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _claim(self, now: float) -> int:
        for i in range(SLOTS):
            pid, _, updated = _SLOT.unpack_from(self._map, i * _SLOT.size)
            if pid in (0, self.pid) or now - updated > STALE_S:
                _SLOT.pack_into(self._map, i * _SLOT.size, self.pid, 0, now)
                return i
        raise RuntimeError(f"the connection table holds {SLOTS} processes already")

    def publish(self, connections: int, now: float) -> None:
        """Write this process's connection count."""
        _SLOT.pack_into(self._map, self.slot * _SLOT.size, self.pid, connections, now)

    def live_counts(self, now: float) -> list[int]:
        """The connection counts of every process updated within :data:`STALE_S`."""
        counts = []
        for i in range(SLOTS):
            pid, connections, updated = _SLOT.unpack_from(self._map, i * _SLOT.size)
            if pid and now - updated <= STALE_S:
                counts.append(connections)
        return counts


class ConnectionBalancer:
    """Decides, per request, whether this process closes the connection after answering."""

    def __init__(self, table: ConnectionTable) -> None:
        self.table = table
        self._seen: dict[tuple, float] = {}  # client (host, port) -> last request time
        self._last_shed = -math.inf
        self.closed = 0
        """Connections this process asked to close."""

    def should_close(self, client: tuple, now: float | None = None) -> bool:
        """Note a request on ``client``'s connection; True: answer it with ``Connection: close``."""
        now = time.time() if now is None else now
        seen = self._seen
        seen[client] = now
        for key in [k for k, t in seen.items() if now - t > CONNECTION_IDLE_S]:
            del seen[key]
        mine = len(seen)
        self.table.publish(mine, now)
        counts = self.table.live_counts(now)
        if len(counts) < 2 or now - self._last_shed < SHED_INTERVAL_S:
            return False
        if mine <= math.ceil(sum(counts) / len(counts)):
            return False
        self._last_shed = now
        del seen[client]  # it closes: no longer ours
        self.table.publish(mine - 1, now)
        self.closed += 1
        return True

    def beat(self, now: float | None = None) -> None:
        """Publish the count without a request (a process with no connections still counts).

        Safe beside :meth:`should_close` in another thread: it only reads a copy of the times.
        """
        now = time.time() if now is None else now
        self.table.publish(sum(now - t <= CONNECTION_IDLE_S for t in list(self._seen.values())), now)


class BalanceConnections:
    """ASGI middleware: :class:`ConnectionBalancer` over the table at ``path``."""

    def __init__(self, app: ASGIApp, path: str) -> None:
        self.app, self.balancer = app, ConnectionBalancer(ConnectionTable(path))
        threading.Thread(target=self._heartbeat, name="funnel-balance", daemon=True).start()

    def _heartbeat(self) -> None:
        while True:
            self.balancer.beat()
            time.sleep(HEARTBEAT_S)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; mark the response ``Connection: close`` when this process sheds."""
        client = scope.get("client") if scope["type"] == "http" else None
        if not client or not self.balancer.should_close(tuple(client)):
            await self.app(scope, receive, send)
            return

        async def closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"connection", b"close")]
            await send(message)

        await self.app(scope, receive, closing)
