"""The embedded server (``funnel serve`` without Redis) over real HTTP: freshness, unlisting, durability.

Every test talks to the real command (``python -m funnel serve --data-dir DIR --port P``: one
process, the ``file://`` event log in ``DIR/events``, the entity feed in memory, the retrain worker
in a thread) on a free loopback port, through :mod:`api_server`. The data directory is the
session's ``api_data_template`` (60 synthetic users, 80 items in 20 categories with region and age
limits, 3000 interactions, trained with the full pipeline: retrieval, ranker, re-ranker and a
baseline), copied so the tests can write to it. Some synthetic items are licensed in one
country only, so a user the model never saw states ``country=US`` (a user without a country is
eligible for unrestricted items only). A page of ``limit=100`` (more than the catalogue) holds
every item the user may be shown and has not consumed: an item missing from it is filtered, not
out-ranked.

* ``test_a_click_is_reflected_in_the_users_very_next_page``: an interaction POSTed to
  ``/v1/interactions`` (202) takes the clicked item out of that user's very next page (the seen
  filter, fed by the event log on every request) within 1 s of the POST, for a new and for a
  known user, while a control user in the same country keeps getting it.
* ``test_a_deleted_item_is_never_returned_again``: right after ``DELETE /v1/items/{id}`` returns,
  the item (before: on the first page of most users) is on no page of any of the 60 known users
  nor of new users in every country, nor in the ``/similar`` lists that had it; ``/similar`` of it
  is a 404.
* ``test_a_duplicate_event_id_is_logged_once``: the same ``event_id`` POSTed twice, twice inside
  one batch and by eight clients at once: every call is a 202, the response counts the repeats as
  ``duplicates`` (not ``accepted``), the log holds each id once and the user's history shows each
  event once.
* ``test_an_upserted_item_is_recommended_within_5_s``: an item PUT with a title, description,
  categories and ``published_at`` = now is on some user's first page (``limit=10``) within 5 s,
  with no other traffic. The default retrieval sources have no content source, and ``/similar``
  comes from the baseline model, which knows its training catalogue only (a new item's
  ``/similar`` is a 404 until the next training), so the path that serves a new item is the
  new-items source: it indexes the row on upsert and ranks it by publication time. Nothing else
  can put an id that did not exist before the PUT on a page, and a top-10 slot is not popularity
  padding (a new item has no popularity).
* ``test_acknowledged_events_survive_a_hard_kill`` (last: it kills the module's server): two
  client threads POST events back to back (single events and batches of up to 25, each with a
  unique ``event_id``) while the server's process group is SIGKILLed; the event log, reopened
  afterwards, holds every ``event_id`` that got a 202 (exactly once, and nothing that was never
  sent). The server restarts on the same data directory and serves: ready, fresh pages, the
  user's history, and a retried acknowledged event is a duplicate (the dedup index came back).

Bugs these tests found (fixed with them): a batch repeating an ``event_id`` counted the repeat as
accepted, and so did concurrent requests with the same id (each read the log's end before
another's append); a user imported with a country but no interactions got an empty page (the
serving users table held the training interactions' users only); an item published after the
last event was "in the future" for the new-items source until more events came; ``/similar`` of
an upserted item was a 422 about internal item indices.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_server import ApiServer, interaction, wait_reflected

from funnel.data.lake import Lake
from funnel.events import segment as seg
from funnel.events.file_log import FileEventLog

FRESHNESS_S = 1.0  # the bound in the embedded mode
UPSERT_S = 5.0  # the bound for a new item to be retrievable
ALL = 100  # a page limit above the catalogue's 80 items: every eligible, unconsumed item
COUNTRY = "US"


@dataclass
class World:
    """The running server and the known users (with their country) of its data directory."""

    api: ApiServer
    users: dict[str, str]


def _users(data_dir: Path) -> dict[str, str]:
    table = Lake(data_dir / "lake").read("users", columns=["user_id", "attributes"]).to_pylist()
    return {row["user_id"]: json.loads(row["attributes"] or "{}").get("country", COUNTRY) for row in table}


@pytest.fixture(scope="module")
def world(api_data_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """One embedded server for the module, over a private copy of the trained data directory."""
    root = tmp_path_factory.mktemp("http")
    data = Path(shutil.copytree(api_data_template, root / "data"))
    world = World(ApiServer(data, root / "serve.log"), _users(data))
    try:
        world.api.wait_up()
        r, items = world.api.page("warm-up", 10, country=COUNTRY)  # the first page loads the model lazily
        assert r.status_code == 200 and items, r.text
        yield world
    finally:
        world.api.stop()  # the durability test replaces the server it killed


def _post(api: ApiServer, body: Any) -> tuple[int, int]:
    r = api.request("POST", "/v1/interactions", json=body)
    assert r.status_code == 202, r.text
    return r.json()["accepted"], r.json()["duplicates"]


def _logged_event_ids(events_dir: Path) -> list[str | None]:
    """The ``event_id`` of every record of the file event log, read straight from its segment files.

    The running server holds the log's writer lock, so this reads the files without opening a
    ``FileEventLog``: they are append-only, and every acknowledged batch was fsync'd before its 202.
    """
    ids = []
    for path in sorted(events_dir.glob("*.log")):
        with path.open("rb") as fh:
            for _, _, payload in seg.iter_frames(fh, seg.SEGMENT_HEADER.size):
                ids.append(seg.decode_payload(payload).get("event_id"))
    return ids


# ---- 1. freshness --------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["new user", "known user"])
def test_a_click_is_reflected_in_the_users_very_next_page(world: World, who: str) -> None:
    api = world.api
    if who == "new user":
        user, country = f"new-{uuid.uuid4().hex[:8]}", COUNTRY
    else:
        user = sorted(world.users)[3]
        country = world.users[user]
    control = f"control-{uuid.uuid4().hex[:8]}"  # never saw anything: gets every eligible item
    r, before = api.page(user, ALL, country=country)
    assert r.status_code == 200 and len(before) >= 20, r.text
    control_items = set(api.page(control, ALL, country=country)[1])
    clicked = next(item for item in before if item in control_items)  # the user's best the control gets

    posted = time.monotonic()
    assert _post(api, interaction(user, clicked, uuid.uuid4().hex)) == (1, 0)
    acked = time.monotonic() - posted
    reflected = wait_reflected(
        api, user, clicked, control, FRESHNESS_S, limit=ALL, since=posted, country=country
    )
    assert reflected.polls == 1, f"{reflected.polls} pages until the click showed"  # the very next page
    assert reflected.seconds < FRESHNESS_S
    after = api.page(user, ALL, country=country)[1]
    assert set(after) == set(before) - {clicked}  # the click took out exactly that item
    print(f"\n{who}: 202 in {acked * 1e3:.1f} ms, next page lacks it {reflected.seconds * 1e3:.1f} ms after")


# ---- 2. DELETE then never returned ---------------------------------------------------------------


def test_a_deleted_item_is_never_returned_again(world: World) -> None:
    api, users = world.api, sorted(world.users)
    shown = Counter(item for user in users for item in api.page(user, 10)[1])
    victim, count = shown.most_common(1)[0]
    assert count >= 10, shown.most_common(3)
    related: list[str] = []  # a few items whose similar list has the victim
    for item in (f"i{k:06d}" for k in range(80)):
        if len(related) < 5 and item != victim and victim in [s["item_id"] for s in _similar(api, item, 20)]:
            related.append(item)
    assert related, f"{victim} is similar to no item"
    countries = sorted(set(world.users.values()))
    newcomers = {f"new-{c}-{uuid.uuid4().hex[:6]}": c for c in countries}
    eligible = [u for u, c in newcomers.items() if victim in api.page(u, ALL, country=c)[1]]
    assert eligible, "the victim is on no new user's page before the DELETE"

    started = time.monotonic()
    deleted = api.request("DELETE", f"/v1/items/{victim}")
    took = time.monotonic() - started
    assert deleted.status_code == 204, deleted.text
    pages = 0
    for user in users:
        r, items = api.page(user, ALL)
        assert r.status_code == 200 and items and victim not in items, (user, r.text[:300])
        pages += 1
    for user, country in newcomers.items():
        r, items = api.page(user, ALL, country=country)
        assert r.status_code == 200 and items and victim not in items, (user, r.text[:300])
        pages += 1
    for item in related:
        similar = _similar(api, item, ALL)
        assert similar and victim not in [s["item_id"] for s in similar], item
    gone = api.request("GET", f"/v1/items/{victim}/similar")
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_found", gone.text
    print(f"\nDELETE {victim} (on {count} first pages): {took * 1e3:.1f} ms; then on none of {pages} pages")


def _similar(api: ApiServer, item: str, limit: int) -> list[dict[str, Any]]:
    r = api.request("GET", f"/v1/items/{item}/similar", params={"limit": limit})
    assert r.status_code == 200, r.text
    return list(r.json())


# ---- 3. duplicate event ids ----------------------------------------------------------------------


def test_a_duplicate_event_id_is_logged_once(world: World) -> None:
    api = world.api
    user = f"dup-{uuid.uuid4().hex[:8]}"
    e1, e2, e3, e4 = (uuid.uuid4().hex for _ in range(4))
    assert _post(api, interaction(user, "i000001", e1)) == (1, 0)
    assert _post(api, interaction(user, "i000001", e1)) == (0, 1)
    batch = [
        interaction(user, "i000002", e2),
        interaction(user, "i000002", e2),
        interaction(user, "i000003", e3),
        interaction(user, "i000001", e1),
    ]
    assert _post(api, batch) == (2, 2)

    barrier = threading.Barrier(8)
    answers: list[tuple[int, int]] = []

    def post_e4() -> None:
        barrier.wait()
        answers.append(_post(api, interaction(user, "i000004", e4)))

    threads = [threading.Thread(target=post_e4) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(answers) == 8 and sum(a for a, _ in answers) == 1 and sum(d for _, d in answers) == 7, answers

    logged = Counter(_logged_event_ids(api.data_dir / "events"))
    assert [logged[e] for e in (e1, e2, e3, e4)] == [1, 1, 1, 1]
    history = api.request("GET", f"/v1/users/{user}/history").json()["items"]
    assert sorted(h["item_id"] for h in history) == ["i000001", "i000002", "i000003", "i000004"]


# ---- 4. an upserted item is retrievable ----------------------------------------------------------


def test_an_upserted_item_is_recommended_within_5_s(world: World) -> None:
    api = world.api
    item = f"new-{uuid.uuid4().hex[:8]}"
    unknown = api.request("GET", f"/v1/items/{item}/similar")
    assert unknown.status_code == 404, unknown.text
    body = {
        "title": "Quiyormar Kafen: the making of",
        "description": "secret yormo tips behind the kanarlo moment of the year.",
        "categories": ["music"],
        "published_at": int(time.time() * 1000),
    }
    started = time.monotonic()
    put = api.request("PUT", f"/v1/items/{item}", json=body)
    assert put.status_code == 202 and put.json()["accepted"] == 1, put.text
    candidates = [(u, c) for u, c in sorted(world.users.items())] + [(f"cold-{k}", COUNTRY) for k in range(5)]
    found: tuple[str, str, float] | None = None
    while found is None:
        for user, country in candidates:
            params = {"user_id": user, "limit": 10, "country": country}
            r = api.request("GET", "/v1/recommendations", params=params)
            assert r.status_code == 200, r.text
            hit = [it for it in r.json()["items"] if it["item_id"] == item]
            if hit:
                found = (user, hit[0]["reason_code"], time.monotonic() - started)
                break
        else:
            assert time.monotonic() - started < UPSERT_S, f"{item} on no first page after {UPSERT_S} s"
    user, reason, seconds = found
    assert seconds < UPSERT_S
    similar = api.request("GET", f"/v1/items/{item}/similar")  # the baseline knows its training catalogue
    assert similar.status_code == 404 and "trained" in similar.json()["error"]["message"], similar.text
    print(f"\n{item} on {user}'s first page ({reason}) {seconds:.3f} s after the PUT")


# ---- 5. durability: acknowledged events survive SIGKILL ------------------------------------------


@dataclass
class Poster:
    """A client POSTing interactions back to back until the server is gone."""

    api: ApiServer
    name: str
    max_batch: int  # 1: single events (an object); else batches of 1..max_batch (an array)
    acked: list[str] = field(default_factory=list)
    unanswered: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    error: str = ""

    def run(self, stop: threading.Event) -> None:
        n = 0
        while not stop.is_set():
            size = 1 if self.max_batch == 1 else 1 + n % self.max_batch
            ids = [f"{self.name}-{n + k}" for k in range(size)]
            events = [_stream_event(n + k, e) for k, e in enumerate(ids)]
            body = events[0] if self.max_batch == 1 else events
            try:
                r = self.api.request("POST", "/v1/interactions", json=body)
            except httpx.TransportError as exc:  # the server is gone (or the reply was lost with it)
                self.unanswered, self.error = ids, repr(exc)
                return
            if r.status_code == 202 and r.json()["accepted"] == size:
                self.acked += ids
            else:
                self.refused.append(f"{r.status_code} {r.text[:200]}")
            n += size


def _stream_event(n: int, event_id: str) -> dict[str, Any]:
    """The ``n``-th streamed event: 50 users (``s00``..``s49``) clicking the 80 catalogue items in turn."""
    return interaction(f"s{n % 50:02d}", f"i{n % 80:06d}", event_id)


def test_acknowledged_events_survive_a_hard_kill(world: World) -> None:
    """Last in the module: it kills the module's server and leaves the restarted one to the fixture."""
    api = world.api
    events_dir = api.data_dir / "events"
    before = len(_logged_event_ids(events_dir))  # what the other tests logged
    stop = threading.Event()
    posters = [Poster(api, "single", 1), Poster(api, "batch", 25)]
    threads = [threading.Thread(target=p.run, args=(stop,), daemon=True) for p in posters]
    try:
        for thread in threads:
            thread.start()
        started = time.monotonic()
        while sum(len(p.acked) for p in posters) < 1000 or time.monotonic() - started < 1.0:
            assert time.monotonic() - started < 20, [len(p.acked) for p in posters]
            assert all(thread.is_alive() for thread in threads), [p.error for p in posters]
            time.sleep(0.01)
        api.kill()  # SIGKILL to the server's process group, mid-stream
        streamed = time.monotonic() - started
        for thread in threads:
            thread.join(timeout=30)
            assert not thread.is_alive()
    finally:
        stop.set()
        api.stop()
    for p in posters:
        assert p.error and not p.refused, (p.name, p.error, p.refused[:3])  # each was cut off by the kill
    acked = {e for p in posters for e in p.acked}
    in_flight = {e for p in posters for e in p.unanswered}

    with FileEventLog(events_dir) as log:  # reopening truncates a torn tail, if the kill left one
        records = log.read(before, log.end_offset - before + 1)
    logged = Counter(r.event.event_id for r in records)
    assert not acked - set(logged), f"{len(acked - set(logged))} acknowledged events lost"
    assert max(logged.values()) == 1 and set(logged) <= acked | in_flight  # once each, none invented
    landed = len(set(logged) & in_flight)

    world.api = again = ApiServer(api.data_dir, api.log_path)
    boot = again.wait_up()
    ready = again.request("GET", "/readyz")
    assert ready.status_code == 200 and all(ready.json()["checks"].values()), ready.text
    r, items = again.page("s07", 10, country=COUNTRY)
    assert r.status_code == 200 and items and r.json()["fallback"] is None, r.text
    history = again.request("GET", "/v1/users/s07/history", params={"limit": 1000}).json()["items"]
    mine = [r for r in records if r.event.user_id == "s07"]
    assert len(history) == len(mine) and {h["source"] for h in history} == {"log"}
    retried = min(acked)
    user, item = next((r.event.user_id, r.event.item_id) for r in records if r.event.event_id == retried)
    assert _post(again, interaction(user, item, retried)) == (0, 1)  # the dedup index came back too
    print(
        f"\nstreamed {streamed:.2f} s: {len(acked)} events acknowledged, {len(logged)} in the log "
        f"({landed} of {len(in_flight)} unanswered at the kill landed); restart answered in {boot:.1f} s"
    )
