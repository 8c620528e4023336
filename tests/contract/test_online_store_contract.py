"""The OnlineStore contract: the memory and Redis backends run this same suite.

Adding a backend is one entry in BACKENDS: a URL template for ``open_online_store`` where
``{ns}`` is a per-test namespace (deleted afterwards by ``tests/conftest.py``), and how time
passes for it (an injected clock for memory, real sleeps for Redis, whose TTLs are the server's).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pytest

from funnel.core.errors import UnavailableError, ValidationError
from funnel.features.online.memory import MemoryOnlineStore
from funnel.features.online.protocol import (
    FAST_PATH,
    KEY_FORMAT_VERSION,
    Increment,
    OnlineStore,
    capabilities,
    feature_key,
)
from funnel.features.online.registry import open_online_store

BACKENDS = [
    pytest.param("memory://", id="memory"),
    pytest.param("redis://127.0.0.1:6379/15?prefix={ns}", id="redis", marks=pytest.mark.redis),
]

U1 = feature_key("user", "1", "activity")
U2 = feature_key("user", "2", "activity")
I1 = feature_key("item", "i1", "stats")


@dataclass
class Backend:
    """The store under test, a way to open another namespace, and a way to let time pass."""

    store: OnlineStore
    open_other: Callable[[str], OnlineStore]
    advance: Callable[[float], None]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    opened: list[OnlineStore] = []
    if request.param.startswith("memory"):
        now = [1000.0]

        def advance(seconds: float) -> None:
            now[0] += seconds

        def open_other(suffix: str) -> OnlineStore:
            opened.append(MemoryOnlineStore(clock=lambda: now[0]))
            return opened[-1]

    else:
        ns = request.getfixturevalue("redis_namespace")

        def advance(seconds: float) -> None:
            time.sleep(seconds)

        def open_other(suffix: str) -> OnlineStore:
            opened.append(open_online_store(request.param.format(ns=ns + suffix)))
            return opened[-1]

    store = open_other("")
    store.create()  # type: ignore[attr-defined]
    yield Backend(store, open_other, advance)
    for s in opened:
        s.close()


def inc(key: str, field: str, amount: float, ttl_s: int | None = None) -> Increment:
    return Increment(key, field, amount, ttl_s)


def test_is_an_online_store(backend: Backend) -> None:
    assert isinstance(backend.store, OnlineStore)


def test_missing_keys_read_as_empty(backend: Backend) -> None:
    assert backend.store.get_many([U1, U2, U1]) == [{}, {}, {}]
    assert backend.store.get_many([]) == []


def test_set_many_replaces_and_round_trips_floats_exactly(backend: Backend) -> None:
    s = backend.store
    values = {"a": 0.1, "b": -2.5e-300, "c": 1e300, "d": 3, "e": 1 / 3, "f": 2.0**53}
    s.set_many({U1: values, I1: {"x": 1.0}})
    got = s.get_many([I1, U1, U2, U1])
    assert got == [{"x": 1.0}, values, {}, values]
    assert all(type(v) is float for v in got[1].values())
    s.set_many({U1: {"z": 7.0}})  # a replace, not a merge
    assert s.get_many([U1, I1]) == [{"z": 7.0}, {"x": 1.0}]
    s.set_many({U1: {}})  # an empty row deletes
    assert s.get_many([U1]) == [{}]


def test_integer_counts_are_exact(backend: Backend) -> None:
    s = backend.store
    batch = [
        (f"e{k}", [inc(U1, "clicks", 1.0), inc(U1, "big", 2.0**40), inc(I1, "n", -1)]) for k in range(500)
    ]
    assert s.apply(batch, dedup_ttl_s=60) == 500
    (u1, i1) = s.get_many([U1, I1])
    assert u1 == {"clicks": 500.0, "big": 500 * 2.0**40}
    assert i1 == {"n": -500.0}
    assert type(u1["clicks"]) is float
    s.set_many({U2: {"n": 2.0**52}})
    s.apply([("x", [inc(U2, "n", 1.0)])], dedup_ttl_s=60)
    assert s.get_many([U2]) == [{"n": 2.0**52 + 1}]


def test_fractional_sums(backend: Backend) -> None:
    s = backend.store
    s.apply([(f"e{k}", [inc(U1, "dwell", 0.1), inc(U1, "neg", -0.25)]) for k in range(30)], 60)
    got = s.get_many([U1])[0]
    assert got["dwell"] == pytest.approx(3.0, rel=1e-12)
    assert got["neg"] == -7.5


def test_apply_is_idempotent_per_event(backend: Backend) -> None:
    s = backend.store
    first = [("e1", [inc(U1, "clicks", 1.0), inc(I1, "clicks", 1.0)]), ("e2", [inc(U1, "clicks", 1.0)])]
    assert s.apply(first, dedup_ttl_s=60) == 2
    assert s.apply(first, dedup_ttl_s=60) == 0  # a replayed batch changes nothing
    again = [
        ("e3", [inc(U1, "clicks", 1.0)]),
        ("e1", [inc(U1, "clicks", 100.0)]),
        ("e3", [inc(U1, "x", 1.0)]),
    ]
    assert s.apply(again, dedup_ttl_s=60) == 1  # e1 seen before, e3 twice in the batch
    assert s.get_many([U1, I1]) == [{"clicks": 3.0}, {"clicks": 1.0}]
    assert s.apply([], dedup_ttl_s=60) == 0
    assert s.apply([("empty", [])], dedup_ttl_s=60) == 1


def test_concurrent_applies_count_each_event_once(backend: Backend) -> None:
    s = backend.store
    batch = [
        (f"e{k}", [inc(U1, "n", 1.0), inc(feature_key("item", str(k % 10), "s"), "n", 1.0)])
        for k in range(200)
    ]

    def worker(w: int) -> None:
        for start in range(0, 200, 25):  # every worker applies every event, in a different order
            chunk = batch[start : start + 25]
            s.apply(chunk[::-1] if w % 2 else chunk, dedup_ttl_s=60)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = s.get_many([U1] + [feature_key("item", str(k), "s") for k in range(10)])
    assert got == [{"n": 200.0}] + [{"n": 20.0}] * 10


def test_a_bad_batch_applies_nothing(backend: Backend) -> None:
    s = backend.store
    bad_batches = [
        [("e1", [inc(U1, "n", 1.0)]), ("e2", [inc("user:2", "n", 1.0)])],  # not a feature_key
        [("e1", [inc(U1, "n", 1.0)]), ("e2", [inc(U1, "n", float("nan"))])],
        [("e1", [inc(U1, "n", 1.0)]), ("e2", [inc(U1, "n", 1.0, ttl_s=0)])],
        [("e1", [inc(U1, "n", 1.0)]), ("", [inc(U1, "n", 1.0)])],
        [("e1", [inc(U1, "n", 1.0)]), ("e2", [(U1, "n", 1.0)])],  # type: ignore[list-item]
    ]
    for bad in bad_batches:
        with pytest.raises(ValidationError):
            s.apply(bad, dedup_ttl_s=60)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        s.apply([("e1", [inc(U1, "n", 1.0)])], dedup_ttl_s=0)
    assert s.get_many([U1]) == [{}]
    assert s.apply([("e1", [inc(U1, "n", 1.0)])], dedup_ttl_s=60) == 1  # e1 was never recorded


def test_bad_keys_and_values_are_rejected(backend: Backend) -> None:
    s = backend.store
    with pytest.raises(ValidationError):
        s.get_many(["user:1:activity"])
    with pytest.raises(ValidationError):
        s.get_many([feature_key("user", "1", "a").replace(f"fs{KEY_FORMAT_VERSION}:", "fs0:")])  # old format
    with pytest.raises(ValidationError):
        s.set_many({U1: {"a": float("inf")}})
    with pytest.raises(ValidationError):
        s.set_many({U1: {"a": 1.0}}, ttl_s=-5)
    assert s.get_many([U1]) == [{}]


def test_ttls_and_dedup_expiry(backend: Backend) -> None:
    s = backend.store
    s.set_many({U1: {"a": 1.0}}, ttl_s=1)
    s.set_many({U2: {"a": 1.0}})  # no TTL: never expires
    s.apply([("e1", [inc(I1, "n", 1.0, ttl_s=1)])], dedup_ttl_s=1)
    s.apply([("e2", [inc(U2, "b", 1.0)])], dedup_ttl_s=60)  # an increment without TTL
    assert s.get_many([U1, U2, I1]) == [{"a": 1.0}, {"a": 1.0, "b": 1.0}, {"n": 1.0}]
    backend.advance(1.2)
    assert s.get_many([U1, U2, I1]) == [{}, {"a": 1.0, "b": 1.0}, {}]
    # the dedup entry of e1 expired too: the same event id applies again (on a fresh key)
    assert s.apply([("e1", [inc(I1, "n", 1.0, ttl_s=60)]), ("e2", [inc(U2, "b", 1.0)])], 60) == 1
    assert s.get_many([I1, U2]) == [{"n": 1.0}, {"a": 1.0, "b": 1.0}]


def test_increments_refresh_the_ttl(backend: Backend) -> None:
    s = backend.store
    s.apply([("e1", [inc(U1, "n", 1.0, ttl_s=1)])], 60)
    backend.advance(0.6)
    s.apply([("e2", [inc(U1, "n", 1.0, ttl_s=2)])], 60)
    backend.advance(0.6)  # 1.2 s after the first write, 0.6 s after the last
    assert s.get_many([U1]) == [{"n": 2.0}]


def test_batched_read_of_many_keys(backend: Backend) -> None:
    s = backend.store
    keys = [feature_key("item", f"i{k}", "stats") for k in range(1000)]
    s.set_many({k: {"ctr": n / 1000, "n": float(n)} for n, k in enumerate(keys) if n % 3})
    got = s.get_many([U1, *keys])
    assert len(got) == 1001 and got[0] == {}
    assert got[1:] == [{"ctr": n / 1000, "n": float(n)} if n % 3 else {} for n in range(1000)]


def test_namespaces_are_isolated_and_teardown_clears_one(backend: Backend) -> None:
    s, other = backend.store, backend.open_other("-other")
    other.create()  # type: ignore[attr-defined]
    s.apply([("e1", [inc(U1, "n", 1.0)])], 60)
    other.apply([("e1", [inc(U1, "n", 5.0)])], 60)  # its own dedup ids too
    assert s.get_many([U1]) == [{"n": 1.0}] and other.get_many([U1]) == [{"n": 5.0}]
    s.teardown()  # type: ignore[attr-defined]
    assert s.get_many([U1]) == [{}]
    assert other.get_many([U1]) == [{"n": 5.0}]
    assert s.apply([("e1", [inc(U1, "n", 1.0)])], 60) == 1  # dedup ids were torn down too
    s.create()  # type: ignore[attr-defined]  # idempotent
    s.create()  # type: ignore[attr-defined]


def test_closed_store_refuses_calls(backend: Backend) -> None:
    s = backend.store
    s.close()
    s.close()  # idempotent
    with pytest.raises(UnavailableError):
        s.get_many([U1])
    with pytest.raises(UnavailableError):
        s.apply([("e1", [inc(U1, "n", 1.0)])], 60)


def test_redis_urls_are_checked_before_connecting() -> None:
    from funnel.core.errors import ConfigError
    from funnel.events.registry import open_event_log

    for bad in (
        "redis://h/notadb",
        "redis://h:6379/0?timeout=soon",
        "redis://h/0?stream=s",
        "redis://h/0?prefix=",
    ):
        with pytest.raises(ConfigError):
            open_online_store(bad)
    for bad in ("redis://h/0?prefix=p", "redis://h:6379/x?stream=s", "redis://h/0?stream=s&timeout=x"):
        with pytest.raises(ConfigError):
            open_event_log(bad)


def test_an_unreachable_redis_is_unavailable() -> None:
    from funnel.events.registry import open_event_log

    store = open_online_store("redis://127.0.0.1:1/0?prefix=p&timeout=0.5")  # nothing listens on port 1
    t0 = time.monotonic()
    with pytest.raises(UnavailableError):
        store.get_many([U1])
    with pytest.raises(UnavailableError):
        store.apply([("e", [inc(U1, "n", 1.0)])], 60)
    with pytest.raises(UnavailableError):
        open_event_log("redis://127.0.0.1:1/0?stream=s&timeout=0.5")
    assert time.monotonic() - t0 < 5  # fails fast: no silent retries
    store.close()


def test_declared_fast_path_reads_fields_as_get_many_does(backend: Backend) -> None:
    s = backend.store
    assert FAST_PATH in capabilities(s)
    s.set_many({U1: {"a": 0.1, "b": 1e300, "c": -3.0}, I1: {"a": 2.0**53}})
    got = s.read_fields([U1, U2, I1, U1], ["c", "a", "zz"])  # type: ignore[attr-defined]
    assert got.dtype == np.float64 and got.shape == (4, 3)
    assert got.tolist() == [[-3.0, 0.1, 0.0], [0.0, 0.0, 0.0], [0.0, 2.0**53, 0.0], [-3.0, 0.1, 0.0]]
    assert s.read_fields([], ["a"]).shape == (0, 1)  # type: ignore[attr-defined]
    with pytest.raises(ValidationError):
        s.read_fields(["not-a-key"], ["a"])  # type: ignore[attr-defined]


def test_read_fields_of_small_and_large_hashes_and_repeated_fields(backend: Backend) -> None:
    s = backend.store
    big = {f"f{k}": k + 0.5 for k in range(50)}
    s.set_many({U1: big, U2: {"f3": 7.0, "other": 1.0}})
    fields = ["f3", "f7", "zz", "f3", "f49"]  # U2 holds fewer entries than fields, U1 more
    expected = [[h.get(f, 0.0) for f in fields] for h in s.get_many([U2, U1, I1, U2])]
    assert s.read_fields([U2, U1, I1, U2], fields).tolist() == expected  # type: ignore[attr-defined]
    many = [f"f{k}" for k in range(2_500)][::-1]  # more fields than one read chunk
    got = s.read_fields([U1, U2], many)  # type: ignore[attr-defined]
    assert got.tolist() == [[h.get(f, 0.0) for f in many] for h in s.get_many([U1, U2])]


def test_read_many_is_get_many_and_read_fields(backend: Backend) -> None:
    s = backend.store
    s.set_many({U1: {"a": 0.1, "b": 2.0}, U2: {"b": 3.0}, I1: {f"x{k}": float(k) for k in range(9)}})
    fields = ["x3", "b", "x3", "nope"]
    hashes, got = s.read_many([U2, U1, I1], [I1, U2, U1], fields)  # type: ignore[attr-defined]
    assert hashes == s.get_many([U2, U1, I1])
    assert got.tolist() == s.read_fields([I1, U2, U1], fields).tolist()  # type: ignore[attr-defined]
    hashes, got = s.read_many([U1], [], fields)  # type: ignore[attr-defined]
    assert hashes == s.get_many([U1]) and got.shape == (0, 4)
    hashes, got = s.read_many([], [U1], [])  # type: ignore[attr-defined]
    assert hashes == [] and got.shape == (1, 0)


def test_apply_sums_equals_apply_and_refuses_seen_ids(backend: Backend) -> None:
    s = backend.store
    sums = {U1: (60, ["clicks", "dwell", "dwell"], [3.0, 0.1, 0.2]), I1: (None, ["n"], [2.0])}
    assert s.apply_sums(["e1", "e2"], sums, dedup_ttl_s=60) == 2  # type: ignore[attr-defined]
    u1, i1 = s.get_many([U1, I1])
    assert u1 == {"clicks": 3.0, "dwell": pytest.approx(0.3, rel=1e-12)} and i1 == {"n": 2.0}
    # an applied id (or one repeated in the call) makes it change nothing and answer None
    assert s.apply_sums(["e3", "e1"], {U1: (None, ["clicks"], [5.0])}, 60) is None  # type: ignore[attr-defined]
    assert s.apply_sums(["e4", "e4"], {U1: (None, ["clicks"], [5.0])}, 60) is None  # type: ignore[attr-defined]
    assert s.apply([("e3", [inc(U1, "clicks", 1.0)]), ("e2", [inc(U1, "clicks", 9.0)])], 60) == 1
    assert s.get_many([U1]) == [{"clicks": 4.0, "dwell": u1["dwell"]}]
    for bad in ({"nope": (None, ["x"], [1.0])}, {U1: (None, ["x"], [math.inf])}, {U1: (0, ["x"], [1.0])}):
        with pytest.raises(ValidationError):
            s.apply_sums(["e9"], bad, 60)  # type: ignore[attr-defined]
    with pytest.raises(ValidationError):
        s.apply_sums([""], {}, 60)  # type: ignore[attr-defined]
    assert s.apply_sums(["e9"], {}, 60) == 1  # type: ignore[attr-defined]
    assert s.get_many([U1]) == [{"clicks": 4.0, "dwell": u1["dwell"]}]


def test_read_fields_sees_every_write_and_expiry(backend: Backend) -> None:
    s = backend.store
    read = s.read_fields  # type: ignore[attr-defined]
    s.apply([("e1", [inc(U1, "a", 1.0, ttl_s=1)])], 60)
    assert read([U1, I1], ["a"]).tolist() == [[1.0], [0.0]]
    assert read([U1, I1], ["a"]).tolist() == [[1.0], [0.0]]  # a repeated read
    s.apply([("e2", [inc(U1, "a", 2.0, ttl_s=1), inc(I1, "a", 5.0)])], 60)
    assert read([I1, U1], ["a"]).tolist() == [[5.0], [3.0]]
    s.apply_sums(["e3"], {I1: (None, ["a"], [1.0])}, 60)  # type: ignore[attr-defined]
    assert read([I1, U1], ["a"]).tolist() == [[6.0], [3.0]]
    s.set_many({I1: {"a": 0.5}})
    assert read([I1, U1], ["a"]).tolist() == [[0.5], [3.0]]
    backend.advance(1.5)
    assert read([I1, U1], ["a"]).tolist() == [[0.5], [0.0]]  # U1 expired


def test_apply_sums_keeps_odd_field_names(backend: Backend) -> None:
    s = backend.store
    odd = ["a\nb", "c\\d", "", "e\\n", "\n"]
    sums = {U1: (None, odd, [1.0, 2.0, 3.0, 4.0, 5.0]), I1: (30, ["plain"], [1.5])}
    assert s.apply_sums(["o1"], sums, 60) == 1  # type: ignore[attr-defined]
    assert s.get_many([U1, I1]) == [dict(zip(odd, [1.0, 2.0, 3.0, 4.0, 5.0], strict=True)), {"plain": 1.5}]


def test_read_fields_of_odd_key_names(backend: Backend) -> None:
    s = backend.store
    odd = feature_key("user", "a\nb", "act")
    s.set_many({odd: {"x": 2.0}, U1: {"x": 1.0}})
    got = s.read_fields([U1, odd, U2], ["x", "y"])  # type: ignore[attr-defined]
    assert got.tolist() == [[1.0, 0.0], [2.0, 0.0], [0.0, 0.0]]
