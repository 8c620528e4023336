"""``CircuitBreaker``: stop calling a failing backing service for a while, then try once again.

Closed (calls pass) until ``failures`` consecutive calls fail; then open for ``reset_s`` seconds
(:meth:`allow` says no, so callers serve from what they have instead of waiting on timeouts);
then half-open: one call is let through, and its outcome closes or re-opens the breaker.

Example:
    >>> clock = [0.0]
    >>> b = CircuitBreaker("redis", failures=2, reset_s=5, clock=lambda: clock[0])
    >>> b.allow(), b.failure(), b.allow(), b.failure(), b.allow(), b.state
    (True, None, True, None, False, 'open')
    >>> clock[0] = 6.0
    >>> b.allow(), b.state, b.allow()
    (True, 'half_open', False)
    >>> b.success(); b.state
    'closed'
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class CircuitBreaker:
    """A consecutive-failure circuit breaker; see the module docstring."""

    def __init__(
        self, name: str, failures: int = 3, reset_s: float = 2.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.name, self.failures, self.reset_s, self._clock = name, failures, reset_s, clock
        self._lock = threading.Lock()
        self._count = 0
        self._opened_at: float | None = None
        self._probing = False
        self.opened_total = 0

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half_open``."""
        if self._opened_at is None:
            return "closed"
        return "half_open" if self._probing else "open"

    def allow(self) -> bool:
        """Whether to call the service now (at most one probe at a time once the reset time passed)."""
        with self._lock:
            if self._opened_at is None:
                return True
            if not self._probing and self._clock() - self._opened_at >= self.reset_s:
                self._probing = True
                return True
            return False

    def success(self) -> None:
        """Record a successful call: the breaker closes."""
        with self._lock:
            self._count, self._opened_at, self._probing = 0, None, False

    def failure(self) -> None:
        """Record a failed call: open after ``failures`` in a row (or at once when probing)."""
        with self._lock:
            self._count += 1
            if self._probing or (self._opened_at is None and self._count >= self.failures):
                self._opened_at, self._probing = self._clock(), False
                self.opened_total += 1
