"""``FairLock``: waiters get the lock in arrival order; reentrant; only the owner releases."""

from __future__ import annotations

import threading
import time

import pytest

from funnel.api.fair_lock import FairLock


def _wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_waiters_get_the_lock_in_arrival_order() -> None:
    lock, order = FairLock(), []

    def take(name: int) -> None:
        with lock:
            order.append(name)
            time.sleep(0.002)  # hold it a little: a barging thread would overtake here

    lock.acquire()
    threads = []
    for name in range(8):
        th = threading.Thread(target=take, args=(name,))
        th.start()
        threads.append(th)
        _wait_until(lambda n=name: lock.waiting == n + 1)  # queued before the next one starts
    lock.release()
    late = threading.Thread(target=take, args=(99,))  # arrives after the release: goes last
    late.start()
    for th in [*threads, late]:
        th.join(5)
    assert order == [*range(8), 99]
    assert lock.waiting == 0 and not lock.held_by_me()


def test_reentrant_and_released_level_by_level() -> None:
    lock, got = FairLock(), []
    with lock, lock:
        assert lock.held_by_me()
    assert not lock.held_by_me()
    lock.acquire()
    lock.acquire()
    lock.release()
    other = threading.Thread(target=lambda: (lock.acquire(), got.append(1), lock.release()))
    other.start()
    _wait_until(lambda: lock.waiting == 1)  # still held at depth 1
    assert got == []
    lock.release()
    other.join(5)
    assert got == [1]


def test_only_the_owner_releases() -> None:
    lock = FairLock()
    with pytest.raises(RuntimeError, match="does not hold"):
        lock.release()
    lock.acquire()
    errors = []

    def release() -> None:
        try:
            lock.release()
        except RuntimeError as exc:
            errors.append(str(exc))

    th = threading.Thread(target=release)
    th.start()
    th.join(5)
    assert errors and lock.held_by_me()
    lock.release()
