"""Hot swap over real HTTP: a version promoted while clients request pages without a pause.

The session's trained directory holds v1 (retrieval + ranker + re-ranker). v2 is v1's bundle
copied under a new version name (a re-release, status ``retired``): loading it costs what loading
any full bundle costs, while training a real one would add 10-20 s and test nothing more about
the swap. Against ``python -m funnel serve`` two client threads request recommendations (and now and then
similar items) back to back; meanwhile the test process promotes v2 through the registry
(``ModelRegistry.manual_promote``, what ``funnel models promote`` runs). The
server must move to v2 without a restart and without a failed request: every response is 200 and
names exactly one of the two versions (body and ``x-funnel-model-version`` header agree), each
client sees v1 then v2 and never v1 again, no request sent before the promote started got v2, and
every request sent after any client received v2 gets v2.
"""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from funnel.engine import Engine
from funnel.training.manifest import ModelManifest
from funnel.training.registry import ModelRegistry
from tests.integration.api_server import ApiServer

HEADER = "x-funnel-model-version"


@dataclass
class Call:
    """One request: when it was sent and answered, its status and the version(s) it named."""

    sent: float
    received: float
    status: int
    body_version: str | None
    header_version: str | None
    error: str | None = None


def _client(api: ApiServer, users: list[str], item: str, stop: threading.Event, out: list[Call]) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        sent = time.monotonic()
        try:
            if n % 5 == 0:  # similar items name their version in the header only
                r = api.request("GET", f"/v1/items/{item}/similar", params={"limit": 5})
                body = r.headers.get(HEADER)
            else:
                r = api.request("GET", "/v1/recommendations", params={"user_id": users[n % len(users)]})
                body = r.json().get("model_version") if r.status_code == 200 else None
            out.append(Call(sent, time.monotonic(), r.status_code, body, r.headers.get(HEADER)))
        except httpx.HTTPError as exc:  # a dropped connection is a failed request
            out.append(Call(sent, time.monotonic(), 0, None, None, repr(exc)))


def test_promote_while_serving_swaps_without_failed_requests(api_data_template: Path, tmp_path: Path):
    data = tmp_path / "data"
    shutil.copytree(api_data_template, data)
    engine = Engine(data)
    v1, v2 = engine.model_version, engine.registry.new_version()
    shutil.copytree(engine.registry.path(v1), engine.registry.root / v2)
    manifest = ModelManifest.read(engine.registry.root / v2)
    manifest.version, manifest.status, manifest.parent_version = v2, "retired", v1
    manifest.write(engine.registry.root / v2)
    assert engine.registry.versions() == [v1, v2] and engine.registry.live() == v1
    users = engine.pipeline(catch_up=False).bundle.users.keys.to_pylist()[:20]
    item = engine.pipeline(catch_up=False).bundle.items.key(0)
    engine.close()

    api = ApiServer(data, tmp_path / "server.log")
    try:
        api.wait_up()
        stop, calls = threading.Event(), [[], []]
        clients = [
            threading.Thread(target=_client, args=(api, users, item, stop, out), daemon=True) for out in calls
        ]
        for c in clients:
            c.start()
        deadline = time.monotonic() + 20
        while min(len(c) for c in calls) < 10:  # both clients served by v1 for a while
            assert time.monotonic() < deadline, api.log_tail()
            time.sleep(0.05)
        promote_started = time.monotonic()
        assert ModelRegistry(data / "models").manual_promote(v2) == v1  # what `funnel models promote` calls
        promoted = time.monotonic()
        while not any(c.body_version == v2 for out in calls for c in out[-5:]):
            assert time.monotonic() - promoted < 30, f"v2 not served 30 s after the promote: {api.log_tail()}"
            time.sleep(0.05)
        swapped = min(c.received for out in calls for c in out if c.body_version == v2)
        time.sleep(1.5)  # traffic after the swap
        stop.set()
        for c in clients:
            c.join(15)
    finally:
        api.stop()

    every = [c for out in calls for c in out]
    failed = [c for c in every if c.status != 200]
    assert not failed, failed[:3]
    assert all(c.body_version in (v1, v2) and c.header_version == c.body_version for c in every)
    for out in calls:  # each client: v1 ... v1 v2 ... v2
        versions = [c.body_version for c in out]
        first_v2 = versions.index(v2)
        assert set(versions[:first_v2]) == {v1} and set(versions[first_v2:]) == {v2}
    assert all(c.body_version == v1 for c in every if c.sent < promote_started)
    assert all(c.body_version == v2 for c in every if c.sent > swapped)
    after = sum(c.sent > swapped for c in every)
    print(
        f"{len(every)} requests, 0 failed; v2 first answered {swapped - promote_started:.2f} s after the "
        f"promote; {after} requests after it"
    )
    assert after >= 10
