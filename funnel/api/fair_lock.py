"""``FairLock``: a reentrant lock granted in arrival order (the serving lock of one API process).

CPython's ``threading.Lock`` and ``RLock`` are not fair: a released lock goes to whichever thread
gets there first, often the one that just released it or a thread that arrived later than the
ones waiting. Under load every request of a process queues for the serving lock, so an unfair
lock turns queueing into a lottery: most requests wait for the few ahead of them, and some wait
for many (the p99 at concurrency 8 was 2.8 times the median in ``benchmarks/bench_api``). This
lock hands itself over to the longest-waiting thread, so a request waits for exactly the
requests that arrived before it.

Example:
    >>> lock = FairLock()
    >>> with lock:
    ...     with lock:  # reentrant, as the RLock it replaces
    ...         lock.held_by_me()
    True
    >>> lock.held_by_me()
    False
"""

from __future__ import annotations

import threading
from collections import deque
from types import TracebackType

_HANDOVER = -1
"""The owner while a released lock passes to the next waiter (no other thread may take it then)."""


class FairLock:
    """A reentrant mutual-exclusion lock whose waiters acquire it first in, first out."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()  # guards the fields below, held only for a few steps
        self._waiters: deque[threading.Lock] = deque()
        self._owner: int | None = None
        self._depth = 0

    def acquire(self) -> None:
        """Block until this thread holds the lock (at once if it holds it already)."""
        me = threading.get_ident()
        with self._mutex:
            if self._owner == me:
                self._depth += 1
                return
            if self._owner is None:
                self._owner, self._depth = me, 1
                return
            turn = threading.Lock()
            turn.acquire()
            self._waiters.append(turn)
        turn.acquire()  # released by the owner that hands the lock over to this thread
        with self._mutex:
            self._owner, self._depth = me, 1

    def release(self) -> None:
        """Release one level; the last hands the lock to the longest-waiting thread, if any."""
        with self._mutex:
            if self._owner != threading.get_ident():
                raise RuntimeError("cannot release a FairLock this thread does not hold")
            self._depth -= 1
            if self._depth:
                return
            if self._waiters:
                self._owner = _HANDOVER
                self._waiters.popleft().release()
            else:
                self._owner = None

    @property
    def waiting(self) -> int:
        """How many threads are queued for the lock."""
        return len(self._waiters)

    def held_by_me(self) -> bool:
        """Whether the calling thread holds the lock."""
        return self._owner == threading.get_ident()

    def __enter__(self) -> FairLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
