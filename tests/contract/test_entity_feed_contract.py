"""The EntityFeed contract: ``memory://`` and ``redis://`` run this same suite.

An entity feed carries the catalogue and user changes made through the API to every API worker
(``funnel/api/entity_feed.py``). What the service relies on, and what this suite checks:

- ``append`` returns a position after the appended changes, and ``read(pos)`` returns exactly the
  changes appended after ``pos`` (``""``: from the start), in append order, round-tripped intact;
- reading on from each returned position visits every change exactly once, also when the feed is
  longer than one read returns (the Redis backend reads at most 10,000 a call);
- an empty append or read never moves the position back to the start (a worker would re-apply
  the whole feed);
- a change appended by one handle is seen by every handle on the same feed (the workers), and
  concurrent appends lose nothing.

Adding a backend is one entry in BACKENDS: a URL template where ``{name}`` is a per-test unique
stream name (deleted afterwards by the conftest ``redis_namespace`` fixture). A ``memory://``
feed lives in one process, so its "second handle" is the same object.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from funnel.api.entity_feed import EntityChange, EntityFeed, open_entity_feed
from funnel.core.errors import ConfigError, UnavailableError

BACKENDS = [
    pytest.param("memory://", id="memory"),
    pytest.param(
        "redis://127.0.0.1:6379/15?stream={name}:entities&timeout=2", id="redis", marks=pytest.mark.redis
    ),
]


class Feeds:
    """This test's feed and a second handle on the same feed (another worker's view)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.feed = open_entity_feed(url)
        self.peer = self.feed if url.startswith("memory://") else open_entity_feed(url)


@pytest.fixture(params=BACKENDS)
def feeds(request: pytest.FixtureRequest) -> Iterator[Feeds]:
    name = request.getfixturevalue("redis_namespace") if "{name}" in request.param else ""
    yield Feeds(request.param.format(name=name))


def changes(n: int, start: int = 0) -> list[EntityChange]:
    kinds = ("item", "unlist", "user")
    out = []
    for k in range(start, start + n):
        kind = kinds[k % 3]
        data = {
            "item": {"status": "listed", "title": f"t{k}"},
            "unlist": {},
            "user": {"attributes": {"k": k}},
        }
        out.append(EntityChange(kind, f"id{k}", data[kind]))
    return out


def read_all(feed: EntityFeed, pos: str = "") -> tuple[list[EntityChange], str]:
    """Read on from ``pos`` until a read returns nothing; every change and the final position."""
    out: list[EntityChange] = []
    for _ in range(1000):
        got, new_pos = feed.read(pos)
        if not got:
            assert new_pos == pos, "an empty read moved the position"
            return out, pos
        assert new_pos != pos, "a non-empty read did not advance the position"
        out += got
        pos = new_pos
    raise AssertionError("the feed never ran dry")


def test_empty_feed_reads_nothing(feeds: Feeds) -> None:
    got, pos = feeds.feed.read("")
    assert got == []
    assert feeds.feed.read(pos)[0] == []


def test_append_then_read_round_trips_in_order(feeds: Feeds) -> None:
    batch = [
        EntityChange("item", "i1", {"status": "listed", "categories": ["a", "b"], "n": 1.5}),
        EntityChange("unlist", "i/2 ü ✓"),
        EntityChange("user", "u1", {"attributes": {"country": "DE", "age": "25-34"}}),
        EntityChange("item", "i1", {"status": "unlisted"}),
    ]
    feeds.feed.append(batch)
    got, pos = feeds.feed.read("")
    assert got == batch
    assert feeds.feed.read(pos) == ([], pos)


def test_read_after_a_position_returns_only_later_changes(feeds: Feeds) -> None:
    first, second, third = changes(3), changes(2, start=3), changes(4, start=5)
    p1 = feeds.feed.append(first)
    p2 = feeds.feed.append(second)
    feeds.feed.append(third)
    assert feeds.feed.read(p1)[0] == second + third
    assert feeds.feed.read(p2)[0] == third
    got, pos = feeds.feed.read("")
    assert got == first + second + third
    # the position a read returns and the one the last append returned say the same thing
    assert feeds.feed.read(pos)[0] == []


def test_empty_append_never_rewinds_the_position(feeds: Feeds) -> None:
    feeds.feed.append(changes(3))
    pos = feeds.feed.append([])
    assert feeds.feed.read(pos)[0] == [], "append([]) returned a position before existing changes"
    later = changes(2, start=3)
    feeds.feed.append(later)
    assert feeds.feed.read(pos)[0] == later


def test_reading_on_visits_every_change_once_beyond_one_read(feeds: Feeds) -> None:
    written = changes(10_050)  # more than one Redis read (10,000)
    for start in range(0, len(written), 2500):
        feeds.feed.append(written[start : start + 2500])
    got, pos = read_all(feeds.feed)
    assert len(got) == len(written)
    assert got == written
    more = changes(3, start=20_000)
    feeds.feed.append(more)
    assert read_all(feeds.feed, pos)[0] == more


def test_another_handle_sees_the_changes(feeds: Feeds) -> None:
    _, peer_pos = feeds.peer.read("")
    batch = changes(5)
    feeds.feed.append(batch)
    got, peer_pos = feeds.peer.read(peer_pos)
    assert got == batch
    feeds.peer.append(changes(1, start=5))
    assert feeds.feed.read(feeds.feed.append([]))[0] == []
    assert feeds.peer.read(peer_pos)[0] == changes(1, start=5)


def test_concurrent_appends_lose_nothing(feeds: Feeds) -> None:
    n_threads, per_thread = 4, 50
    errors: list[BaseException] = []

    def writer(t: int) -> None:
        try:
            for k in range(per_thread):
                handle = feeds.feed if k % 2 else feeds.peer
                handle.append([EntityChange("unlist", f"t{t}-{k}")])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    got, _ = read_all(feeds.feed)
    ids = [c.id for c in got]
    assert sorted(ids) == sorted(f"t{t}-{k}" for t in range(n_threads) for k in range(per_thread))
    for t in range(n_threads):  # one writer's changes stay in its order
        mine = [i for i in ids if i.startswith(f"t{t}-")]
        assert mine == [f"t{t}-{k}" for k in range(per_thread)]


def test_change_json_round_trip() -> None:
    change = EntityChange("item", "ü/1", {"status": "listed", "tags": ["x"], "n": None})
    assert EntityChange.from_json(change.to_json()) == change
    assert EntityChange.from_json(change.to_json().encode()) == change


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once the socket is closed


def test_redis_feed_unreachable_raises_unavailable() -> None:
    """No server: both calls fail with ``UnavailableError`` (the API's 503 / stale_state), fast."""
    feed = open_entity_feed(f"redis://127.0.0.1:{_closed_port()}/0?stream=x&timeout=0.5")
    with pytest.raises(UnavailableError, match="entity feed 'x'"):
        feed.read("")
    with pytest.raises(UnavailableError, match="entity feed 'x'"):
        feed.append([EntityChange("unlist", "i1")])


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://127.0.0.1:6379/0?prefix=x", "unknown option 'prefix'"),
        ("redis://127.0.0.1:6379/0?timeout=soon", "timeout must be a number"),
        ("kafka://broker/x", "kafka"),
    ],
)
def test_bad_urls_are_config_errors(url: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        open_entity_feed(url)
