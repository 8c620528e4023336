"""The EventLog contract: every backend runs this same suite.

Adding a backend is one line in BACKENDS: a URL template for ``open_event_log`` where ``{tmp}`` is
a per-test directory and ``{name}`` a per-test unique name (for a Redis stream key, say). Opening
the same template twice in a test must reach the same stored log, so that persistent backends can
be reopened. Whether a backend is persistent is declared by the backend (``log.persistent``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from funnel.core.errors import UnavailableError, ValidationError
from funnel.core.schema import IMPRESSIONS, INTERACTIONS, Impression, Interaction
from funnel.events.protocol import EventLog, event_from_dict, event_json, event_to_dict, iter_records
from funnel.events.registry import open_event_log
from funnel.events.tables import impressions_table, interactions_table

BACKENDS = [
    pytest.param("memory://", id="memory"),
    pytest.param("file://{tmp}/log?segment_bytes=4096", id="file"),  # tiny segments: reads cross them
    pytest.param("redis://127.0.0.1:6379/15?stream={name}", id="redis", marks=pytest.mark.redis),
]

T0 = 1_700_000_000_000


def click(k: int, event_id: str | None = None, **kw: object) -> Interaction:
    return Interaction(
        user_id=f"u{k % 7}",
        item_id=f"i{k}",
        type="click",
        timestamp=T0 + k,
        event_id=event_id,
        **kw,  # type: ignore[arg-type]
    )


def impression(k: int) -> Impression:
    return Impression(
        request_id=f"r{k}",
        user_id=f"u{k % 7}",
        item_ids=(f"i{k}", f"i{k + 1}"),
        positions=(0, 1),
        timestamp=T0 + k,
        surface="home",
        arm="B",
        propensities=(0.5, 0.25),
    )


Opener = Callable[[], EventLog]


@pytest.fixture(params=BACKENDS)
def open_log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """A function opening this test's log; each call reaches the same stored log."""
    # a Redis stream is named by a unique namespace that tests/conftest.py deletes afterwards
    name = request.getfixturevalue("redis_namespace") if "{name}" in request.param else ""
    url = request.param.format(tmp=tmp_path, name=name)
    opened: list[EventLog] = []

    def opener() -> EventLog:
        for log in opened:
            log.close()
        opened.append(open_event_log(url))
        return opened[-1]

    yield opener
    for log in opened:
        log.close()


@pytest.fixture
def log(open_log: Opener) -> EventLog:
    return open_log()


def test_is_an_event_log(log: EventLog) -> None:
    assert isinstance(log, EventLog)
    assert isinstance(log.persistent, bool)


def test_empty_log(log: EventLog) -> None:
    assert log.end_offset == 0
    assert log.read(0, 10) == []
    assert log.committed("consumer") == 0
    offsets = log.append([])
    assert offsets.dtype == np.int64 and offsets.shape == (0,)
    assert log.end_offset == 0


def test_round_trip_of_interactions_and_impressions(log: EventLog) -> None:
    events = [
        click(0),
        impression(1),
        Interaction(
            "u9",
            "i9",
            "rating",
            T0,
            value=4.5,
            event_id="e9",
            request_id="r1",
            position=3,
            context={"device": "mobile", "país": "ñ"},
        ),
        Impression("r2", "u2", ("a",), (0,), T0),
    ]
    offsets = log.append(events)
    assert offsets.dtype == np.int64
    assert offsets.tolist() == [0, 1, 2, 3]
    records = log.read(0, 100)
    assert [r.offset for r in records] == [0, 1, 2, 3]
    assert [r.event for r in records] == events
    assert type(records[1].event.item_ids) is tuple  # type: ignore[union-attr]


def test_offsets_are_a_global_monotonic_sequence(log: EventLog) -> None:
    seen: list[int] = []
    for b in range(5):
        seen += log.append([click(100 * b + k) for k in range(40)]).tolist()
    assert seen == list(range(200))
    assert log.end_offset == 200
    assert [r.offset for r in iter_records(log, 0, batch_size=33)] == seen
    assert [r.event.item_id for r in log.read(0, 200)] == [
        click(100 * b + k).item_id for b in range(5) for k in range(40)
    ]  # type: ignore[union-attr]


def test_read_from_the_middle_and_max_records(log: EventLog) -> None:
    events = [click(k) for k in range(150)]
    log.append(events)
    assert [r.event for r in log.read(37, 5)] == events[37:42]
    assert [r.offset for r in log.read(140, 100)] == list(range(140, 150))
    assert log.read(149, 1)[0].event == events[149]
    assert log.read(150, 10) == []
    assert log.read(10_000, 10) == []
    assert log.read(5, 0) == []


def test_bad_read_arguments(log: EventLog) -> None:
    with pytest.raises(ValidationError):
        log.read(-1, 10)
    with pytest.raises(ValidationError):
        log.read(0, -1)


def test_dedup_within_a_batch(log: EventLog) -> None:
    first = click(1, event_id="e1")
    retry = click(2, event_id="e1")  # same id, other content: still a duplicate of the first
    offsets = log.append([first, click(3, event_id="e3"), retry, click(4)])
    assert offsets.tolist() == [0, 1, 0, 2]
    assert log.end_offset == 3
    assert [r.event for r in log.read(0, 10)] == [first, click(3, event_id="e3"), click(4)]


def test_dedup_across_batches(log: EventLog) -> None:
    log.append([click(k, event_id=f"e{k}") for k in range(50)])
    log.append([click(k) for k in range(50, 60)])
    offsets = log.append([click(7, event_id="e7"), click(99, event_id="new"), click(49, event_id="e49")])
    assert offsets.tolist() == [7, 60, 49]
    assert log.end_offset == 61
    assert log.append([click(99, event_id="new")]).tolist() == [60]


def test_events_without_an_event_id_are_never_deduplicated(log: EventLog) -> None:
    assert log.append([click(1), click(1), impression(2), impression(2)]).tolist() == [0, 1, 2, 3]
    assert log.append([click(1)]).tolist() == [4]


def test_a_bad_batch_stores_nothing(log: EventLog) -> None:
    log.append([click(0)])
    with pytest.raises(ValidationError):
        log.append([click(1), {"user_id": "u"}])  # type: ignore[list-item]
    assert log.end_offset == 1
    assert log.append([click(2)]).tolist() == [1]


def test_commit_and_committed(log: EventLog) -> None:
    log.append([click(k) for k in range(10)])
    log.commit("features", 4)
    log.commit("trainer", 10)
    log.commit("features", 6)
    assert (log.committed("features"), log.committed("trainer"), log.committed("other")) == (6, 10, 0)
    log.commit("features", 2)  # rewinding (replay) is allowed
    assert log.committed("features") == 2
    for bad in (-1, 11):
        with pytest.raises(ValidationError):
            log.commit("features", bad)
    with pytest.raises(ValidationError):
        log.commit("", 1)
    assert log.committed("features") == 2


def test_concurrent_appends_get_distinct_offsets(log: EventLog) -> None:
    results: list[list[int]] = []

    def writer(w: int) -> None:
        for b in range(10):
            results.append(log.append([click(1000 * w + 10 * b + k) for k in range(5)]).tolist())

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(off for batch in results for off in batch) == list(range(200))
    assert all(batch == list(range(batch[0], batch[0] + 5)) for batch in results)  # a batch is contiguous
    assert len({r.event.item_id for r in log.read(0, 500)}) == 200  # type: ignore[union-attr]


def test_closed_log_refuses_calls(log: EventLog) -> None:
    log.close()
    log.close()  # idempotent
    with pytest.raises(UnavailableError):
        log.append([click(1)])
    with pytest.raises(UnavailableError):
        log.read(0, 1)


def test_reopen_preserves_everything(open_log: Opener) -> None:
    log = open_log()
    if not log.persistent:
        pytest.skip("the backend declares itself not persistent")
    events = [click(k, event_id=f"e{k}") for k in range(100)] + [impression(k) for k in range(100, 120)]
    log.append(events[:60])
    log.append(events[60:])
    log.commit("features", 42)
    log = open_log()
    assert log.end_offset == 120
    assert [r.event for r in log.read(0, 1000)] == events
    assert log.committed("features") == 42
    assert log.append([click(5, event_id="e5"), click(500, event_id="e500")]).tolist() == [5, 120]
    log = open_log()
    assert log.append([click(500, event_id="e500")]).tolist() == [120]
    assert log.end_offset == 121


def test_tables_from_records(log: EventLog) -> None:
    log.append([click(0, value=1.5, request_id="r0", position=2), impression(1), click(2, event_id="e2")])
    records = log.read(0, 10)
    inter = interactions_table(records)
    assert inter.schema == INTERACTIONS
    assert inter.column("item_id").to_pylist() == ["i0", "i2"]
    assert inter.column("timestamp").cast(pa.int64()).to_pylist() == [T0, T0 + 2]
    assert inter.column("position").to_pylist() == [2, None]
    imp = impressions_table(records)
    assert imp.schema == IMPRESSIONS
    assert imp.to_pylist()[0]["positions"] == [0, 1]
    assert interactions_table([]).num_rows == 0


CODEC_CASES = [
    click(3, event_id="e", value=2.0, context={"a": "b"}),
    click(4, value=-0.0, request_id='q"\\\n\x01é😀', position=0),
    click(5, value=1e300),
    Interaction("u", "i", "view", T0, value=3, position=2),  # int value: the generic path
    Interaction("u", "i", "view", T0, position=True),  # bool position: the generic path
    Interaction(7, "i", "view", T0),  # type: ignore[arg-type]  # non-str id: the generic path
    impression(6),
    Impression("r", "u", ("a",), (0,), T0),
]


@pytest.mark.parametrize("event", CODEC_CASES, ids=range(len(CODEC_CASES)))
def test_codec_matches_to_dict(event: Interaction | Impression) -> None:
    expected = {"kind": type(event).__name__.lower(), **event.to_dict()}
    assert json.loads(json.dumps(event_to_dict(event))) == expected
    assert event_json(event) == json.dumps(expected, separators=(",", ":"), ensure_ascii=False)
    assert event_from_dict(json.loads(event_json(event))) == event


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_codec_rejects_non_finite_values(value: float) -> None:
    with pytest.raises(ValueError):
        event_json(Interaction("u", "i", "rating", T0, value=value))
