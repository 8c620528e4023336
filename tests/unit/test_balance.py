"""Connection balancing between the processes of one ``funnel serve`` (``funnel.api.balance``)."""

from __future__ import annotations

import pytest

from funnel.api.balance import (
    CONNECTION_IDLE_S,
    SHED_INTERVAL_S,
    SLOTS,
    STALE_S,
    ConnectionBalancer,
    ConnectionTable,
)

T = 1_000.0


def _pair(tmp_path):
    path = tmp_path / "balance"
    a = ConnectionBalancer(ConnectionTable(path, pid=11, now=T))
    b = ConnectionBalancer(ConnectionTable(path, pid=22, now=T))
    return a, b


def _requests(balancer: ConnectionBalancer, ports, now: float) -> list[bool]:
    return [balancer.should_close(("127.0.0.1", p), now=now) for p in ports]


def test_a_process_over_its_share_closes_one_connection_at_a_time(tmp_path) -> None:
    a, b = _pair(tmp_path)
    assert _requests(b, [1, 2], T) == [False, True]  # 2 > ceil(2 / 2): a has none yet
    assert _requests(b, [1, 2, 3], T + SHED_INTERVAL_S / 4) == [False] * 3  # 3 again, rate-limited
    assert _requests(a, [4, 5, 6, 7, 8], T) == [False, False, False, False, True]  # 5 > ceil(8 / 2)
    assert _requests(a, [4, 5, 6, 7], T + SHED_INTERVAL_S / 2) == [False] * 4  # rate-limited
    # the client reconnected to b: 4 and 4 now, nobody sheds
    assert _requests(b, [1, 2, 3, 9], T + SHED_INTERVAL_S) == [False] * 4
    assert _requests(a, [4, 5, 6, 7], T + 2 * SHED_INTERVAL_S) == [False] * 4
    assert (a.closed, b.closed) == (1, 1)


def test_the_process_under_its_share_never_closes(tmp_path) -> None:
    a, b = _pair(tmp_path)
    _requests(a, range(10, 17), T)  # 7 connections on a (it sheds some), 1 on b
    assert _requests(b, [1] * 5, T + 1) == [False] * 5


def test_an_idle_process_counts_through_its_heartbeat(tmp_path) -> None:
    a, b = _pair(tmp_path)
    for k in range(5):  # b never sees a request, but beats: a keeps shedding down to its share
        b.beat(T + k)
        _requests(a, range(8), T + k)
    assert a.closed == 5
    stale = ConnectionBalancer(ConnectionTable(tmp_path / "other", pid=1, now=T))
    ConnectionTable(tmp_path / "other", pid=2, now=T)  # claims, never beats: dead after STALE_S
    assert _requests(stale, range(8), T + STALE_S + 1) == [False] * 8


def test_idle_connections_and_stale_processes_stop_counting(tmp_path) -> None:
    a, b = _pair(tmp_path)
    _requests(b, [1, 2, 3, 4], T)
    later = T + CONNECTION_IDLE_S + 0.1  # b's connections went quiet; a sees its own three
    assert _requests(b, [1], later) == [False]  # b: 1
    assert _requests(a, [5, 6, 7], later) == [False, False, True]  # a: 3 > ceil(4 / 2)
    # b stops updating (its process died): a alone is never over its share
    gone = later + STALE_S + 0.5
    assert _requests(a, [5, 6, 7, 8, 9], gone) == [False] * 5


def test_slots_are_claimed_reused_and_limited(tmp_path) -> None:
    path = tmp_path / "balance"
    tables = [ConnectionTable(path, pid=p, now=T) for p in range(1, SLOTS + 1)]
    assert sorted(t.slot for t in tables) == list(range(SLOTS))
    with pytest.raises(RuntimeError, match="holds 64 processes"):
        ConnectionTable(path, pid=999, now=T)
    for t in tables[1:]:
        t.publish(0, T + STALE_S)  # all but the first stay fresh
    reused = ConnectionTable(path, pid=999, now=T + STALE_S + 1)
    assert reused.slot == tables[0].slot
    assert len(reused.live_counts(T + STALE_S + 1)) == SLOTS  # 63 fresh ones and itself
