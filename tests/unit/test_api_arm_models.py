"""Per-arm model versions through the in-process API: arms pinned to registered versions.

The data directory is a copy of the session's trained template (``api_data_template``: 60 users,
80 items, v1 = retrieval + ranker + re-ranker, live) with two more versions: v2, a popularity
model trained with ``--force`` and then rolled back (so v1 is live again and v2 retired), and
v3, an item-kNN model the gate rejected (no events newer than v1's data to compare on).
"""

from __future__ import annotations

import shutil

import pytest
from fastapi.testclient import TestClient

from funnel.api.app import ApiSettings, create_app
from funnel.api.entity_feed import open_entity_feed
from funnel.engine import Engine
from funnel.experiments.assignment import Experiment, assign

USERS = [f"u{i:06d}" for i in range(30)]


@pytest.fixture(scope="module")
def versions(api_data_template, tmp_path_factory):
    """(template directory with v1 live, v2 retired, v3 rejected, (v1, v2, v3))."""
    path = tmp_path_factory.mktemp("arm-models") / "data"
    shutil.copytree(api_data_template, path)
    engine = Engine(path, served_feature_sample=0)
    v1 = engine.model_version
    v2 = engine.train(model="pop", force=True).version
    assert engine.registry.rollback() == v1
    v3 = engine.train(model="itemknn")
    assert v3.status == "rejected", v3
    engine.close()
    return path, (v1, v2, v3.version)


@pytest.fixture
def api(versions, tmp_path):
    """A writable copy served in process (no API keys: loopback)."""
    template, names = versions
    shutil.copytree(template, tmp_path / "data")
    # sources asked in turn: on a loaded machine one late for the 100 ms deadline would be dropped
    # and change a page these tests compare across requests
    app = create_app(
        Engine(tmp_path / "data", served_feature_sample=0), settings=ApiSettings(source_deadline_ms=None)
    )
    with TestClient(app) as client:
        yield client, app.state.service, names


def _pages(client, users=USERS):
    """user -> (arm, model_version in the body, the header's version, item ids)."""
    out = {}
    for user in users:
        r = client.get("/v1/recommendations", params={"user_id": user, "limit": 8})
        assert r.status_code == 200, r.text
        body = r.json()
        header = r.headers["x-funnel-model-version"]
        out[user] = (body["arm"], body["model_version"], header, [i["item_id"] for i in body["items"]])
    return out


def _experiment(v_pinned_live, v_other):
    return {
        "name": "versions",
        "arms": [
            {"name": "control"},
            {"name": "pin-v1", "overrides": {"model_version": v_pinned_live}},
            {"name": "pin-v2", "overrides": {"model_version": v_other}},
        ],
    }


def test_arms_are_served_by_their_versions_through_a_hot_swap_and_back_after_the_stop(api):
    client, svc, (v1, v2, _) = api
    svc.swapper.poll_s = 0.0  # read LIVE before every request
    before = _pages(client)
    assert {(arm, body, head) for arm, body, head, _ in before.values()} == {(None, v1, v1)}
    # what v2 serves these users, from a pipeline of its own (a popularity model: seen items left out)
    offline = svc.engine.load_pipeline(v2)
    v2_pages = {u: offline.bundle.items.keys_of(offline.recommend([u], 8)[0].items) for u in USERS}

    r = client.post("/v1/experiments", json=_experiment(v1, v2))
    assert r.status_code == 201, r.text
    assert [a["overrides"] for a in r.json()["arms"]] == [{}, {"model_version": v1}, {"model_version": v2}]
    assert sorted(p.bundle.version for p in svc.arm_models.loaded()) == sorted([v1, v2])
    arms = {u: assign(Experiment.from_dict({**_experiment(v1, v2), "salt": "versions"}), u) for u in USERS}
    assert set(arms.values()) == {"control", "pin-v1", "pin-v2"}

    during = _pages(client)
    for user, (arm, body, header, items) in during.items():
        assert arm == arms[user] and body == header
        if arm == "pin-v2":
            assert (body, items) == (v2, v2_pages[user])
        else:  # control and the arm pinned to the live version: v1's page, as before the experiment
            assert (body, items) == (v1, before[user][3])
    assert sum(during[u][3] != before[u][3] for u in USERS if arms[u] == "pin-v2") >= 3

    # the pinned pipeline folds in the event log like the live one: a click leaves the user's next page
    user = next(u for u in USERS if arms[u] == "pin-v2")
    top = during[user][3][0]
    click = {"event_id": "e-arm-1", "user_id": user, "item_id": top, "action": "click"}
    assert client.post("/v1/interactions", json=click).status_code == 202
    after_click = _pages(client, [user])[user]
    assert after_click[1] == v2 and top not in after_click[3]
    assert len(svc.engine.catch_up(offline)) == 1  # the same click folded into the offline v2 pipeline
    assert after_click[3] == offline.bundle.items.keys_of(offline.recommend([user], 8)[0].items)

    # LIVE moves to v2: control follows (hot swap), the arm pinned to v1 stays on v1
    pinned_v1 = _pages(client, [u for u in USERS if arms[u] == "pin-v1"])  # after the click, before the swap
    assert client.post(f"/v1/models/{v2}/promote", params={"force": "true"}).status_code == 200
    client.get("/v1/recommendations", params={"user_id": USERS[0]})  # the swapper sees LIVE
    assert svc.swapper.wait(60) and svc.engine.pipeline(catch_up=False).bundle.version == v2
    swapped = _pages(client)
    for user, (arm, body, header, _) in swapped.items():
        assert body == header == (v1 if arm == "pin-v1" else v2), (user, arm, body)
    assert all(swapped[u] == page for u, page in pinned_v1.items())

    # stop: the arms' pipelines are dropped, everyone is served by LIVE (v2 now)
    assert client.post("/v1/experiments/versions/stop").status_code == 200
    assert svc.arm_models.loaded() == []
    assert {(arm, body) for arm, body, _, _ in _pages(client).values()} == {(None, v2)}


def test_model_version_is_checked_when_the_experiment_starts(api):
    client, svc, (v1, v2, v3) = api
    arms = [{"name": "a"}]

    def start(version, name="bad"):
        body = {"name": name, "arms": [*arms, {"name": "b", "overrides": {"model_version": version}}]}
        return client.post("/v1/experiments", json=body)

    field = "arms.1.overrides.model_version"
    cases = [("20990101-000000.000-ffffff", "not found; known versions"), ("../etc", "string should match"),
             (v3, "rejected by the gate")]  # fmt: skip
    for version, says in cases:
        r = start(version)
        assert (r.status_code, r.json()["error"]["field"]) == (422, field), r.text
        assert says in r.json()["error"]["message"].lower(), r.text
    # a corrupt bundle: its state artefact overwritten
    broken = svc.engine.registry.root / "broken-1"
    shutil.copytree(svc.engine.registry.path(v2), broken)
    (broken / "manifest.json").write_text((broken / "manifest.json").read_text().replace(v2, "broken-1"))
    state = next(p for p in broken.iterdir() if p.name.startswith("state"))
    target = state if state.is_file() else next(p for p in state.rglob("*") if p.is_file())
    target.write_bytes(b"not a bundle")
    r = start("broken-1")
    assert (r.status_code, r.json()["error"]["field"]) == (422, field), r.text
    assert "cannot be loaded" in r.json()["error"]["message"]
    # at most two distinct versions per experiment; a version named twice counts once
    named = (("x", v1), ("y", v2), ("z", "broken-1"))
    three = [{"name": n, "overrides": {"model_version": v}} for n, v in named]
    r = client.post("/v1/experiments", json={"name": "three", "arms": [*arms, *three]})
    assert (r.status_code, r.json()["error"]["field"]) == (422, "arms.3.overrides.model_version"), r.text
    assert "at most 2 distinct model versions" in r.json()["error"]["message"]
    twice = [{"name": n, "overrides": {"model_version": v2}} for n in ("x", "y")]
    assert client.post("/v1/experiments", json={"name": "twice", "arms": [*arms, *twice]}).status_code == 201
    assert [p.bundle.version for p in svc.arm_models.loaded()] == [v2]
    # nothing was started by the refused ones, and a 409 (one experiment at a time) loads nothing more
    assert [e["name"] for e in client.get("/v1/experiments").json()["experiments"]] == ["twice"]
    assert start(v1, name="second").status_code == 409
    assert [p.bundle.version for p in svc.arm_models.loaded()] == [v2]


def test_a_second_worker_loads_the_arm_version_from_the_entity_feed(versions, tmp_path):
    template, (v1, v2, _) = versions
    shutil.copytree(template, tmp_path / "data")
    feed = open_entity_feed("memory://")
    # each worker its own log (a file log has one writer); they share the data directory and the feed
    engines = [Engine(tmp_path / "data", event_log_url="memory://", served_feature_sample=0) for _ in "ab"]
    apps = [create_app(engine, feed) for engine in engines]
    with TestClient(apps[0]) as one, TestClient(apps[1]) as two:
        assert two.get("/v1/recommendations", params={"user_id": USERS[0]}).json()["model_version"] == v1
        pinned = {"name": "b", "overrides": {"model_version": v2}}
        body = {"name": "feed", "arms": [{"name": "control"}, pinned]}
        assert one.post("/v1/experiments", json=body).status_code == 201
        exp = Experiment.from_dict({**body, "salt": "feed"})
        seen = {u: (arm, version) for u, (arm, version, _, _) in _pages(two, USERS[:12]).items()}
        assert seen == {u: (assign(exp, u), v2 if assign(exp, u) == "b" else v1) for u in USERS[:12]}
        assert [p.bundle.version for p in apps[1].state.service.arm_models.loaded()] == [v2]
        assert one.post("/v1/experiments/feed/stop").status_code == 200
        assert {v for _, v, _, _ in _pages(two, USERS[:12]).values()} == {v1}
        assert apps[1].state.service.arm_models.loaded() == []
