"""A model version as the target of off-policy evaluation, replayed over a served log; the CLI.

Pages are served to 24 users of a copy of the session's trained directory (``api_data_template``)
through the in-process API under an experiment whose arms set the exploration rate, their
impressions posted with the response's propensities, and the top item of every other page
clicked. Replaying the live version with exploration off must reproduce every page served
without exploration slot for slot; with exploration, only the slots it did not explore match.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from cli_inprocess import run_cli as run
from fastapi.testclient import TestClient

from funnel.api.app import create_app
from funnel.engine import Engine
from funnel.experiments.ope_replay import evaluate_version
from funnel.monitoring.logview import open_readonly

USERS = [f"u{i:06d}" for i in range(24)]


def serve(tmp_path, template, explore: float):
    """Serve, log and click one page per user; returns (data dir, live version, logged slot count, clicks)."""
    shutil.copytree(template, tmp_path / "data")
    engine = Engine(tmp_path / "data", served_feature_sample=0)
    rate = {"explore_rate": explore, "explore_rate_cold": explore}
    arms = [{"name": n, "overrides": {"rerank": rate}} for n in ("a", "b")]
    slots = clicks = 0
    with TestClient(create_app(engine)) as client:
        assert client.post("/v1/experiments", json={"name": "ope", "arms": arms}).status_code == 201
        for n, user in enumerate(USERS):
            body = client.get("/v1/recommendations", params={"user_id": user, "limit": 5}).json()
            items = [i["item_id"] for i in body["items"]]
            impression = {
                "request_id": f"r{n}", "user_id": user, "items_shown": items,
                "positions": list(range(len(items))),
                "propensities": [i["propensity"] for i in body["items"]],
            }  # fmt: skip
            assert client.post("/v1/impressions", json=impression).status_code == 202
            slots += len(items)
            if n % 2 == 0:
                click = {"event_id": f"c{n}", "user_id": user, "item_id": items[0], "action": "click",
                         "request_id": f"r{n}"}  # fmt: skip
                assert client.post("/v1/interactions", json=click).status_code == 202
                clicks += 1
        version = body["model_version"]
    engine.close()
    return tmp_path / "data", version, slots, clicks


@pytest.fixture(scope="module")
def served(api_data_template, tmp_path_factory):
    """The directory served with exploration rate 0.5 (for the CLI tests)."""
    return serve(tmp_path_factory.mktemp("ope-explore"), api_data_template, 0.5)


def test_replaying_the_serving_version_reproduces_every_page(api_data_template, tmp_path):
    data, version, slots, clicks = serve(tmp_path, api_data_template, 0.0)
    log = open_readonly(f"file://{data / 'events'}")
    try:
        found = evaluate_version(data, log, version)
    finally:
        log.close()
    assert len(found.slots) == slots == 5 * len(USERS) and found.before_version == 0
    assert found.targets.tolist() == found.slots.items.tolist()  # slot for slot
    assert found.result.matched == slots and set(found.slots.propensities.tolist()) == {1.0}
    ctr = clicks / slots
    for name in ("ips", "snips", "dr"):  # on-policy: every weight is 1, every estimate the logged CTR
        assert found.result.estimates[name].value == pytest.approx(ctr)
    assert found.result.logging_ctr == pytest.approx(ctr)


def test_exploration_slots_are_the_ones_the_deterministic_replay_does_not_match(served):
    data, version, slots, _ = served
    log = open_readonly(f"file://{data / 'events'}")
    try:
        found = evaluate_version(data, log, version)
    finally:
        log.close()
    rows = found.slots
    explored = rows.propensities < 0.5  # an exploration pick: rate 0.5 x its Thompson share (or below)
    assert 0 < found.result.matched < slots and explored.any()
    # A page's first explored slot, with every slot above it matched, replaced the exploit choice
    # given the same items above: the replay (exploration off) must put another item there. Later
    # slots follow different items above, so a pool item the replay's diversity also picked may
    # coincide there by chance.
    first_explored = 0
    for rid in np.unique(rows.request_ids):
        page = np.flatnonzero(rows.request_ids == rid)
        page = page[np.argsort(rows.positions[page])]
        for at in page:
            if explored[at]:
                assert found.targets[at] != rows.items[at], (rid, rows.positions[at])
                first_explored += 1
                break
            if found.targets[at] != rows.items[at]:
                break
    assert first_explored > 0
    top = rows.positions == 0  # the top slot's propensity is exact: an exploit pick matches the replay
    exploit_top = top & (rows.propensities >= 0.5)
    assert all(t == a for t, a in zip(found.targets[exploit_top], rows.items[exploit_top], strict=True))


def test_cli_ope_prints_the_estimates_with_intervals(served, monkeypatch, capsys):
    data, version, slots, clicks = served
    d = ["--data-dir", str(data), "--policy", version]
    code, out, err = run(monkeypatch, capsys, "experiment", "ope", *d, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["version"], doc["slots"], doc["impressions"]) == (version, slots, len(USERS))
    assert doc["logging"]["ctr"] == pytest.approx(clicks / slots) and 0 < doc["matched"] < slots
    for name in ("ips", "snips", "dr"):
        e = doc["estimates"][name]
        assert e["ci"][0] <= e["value"] <= e["ci"][1] and e["effective_sample_size"] > 0
    code, out, _ = run(monkeypatch, capsys, "experiment", "ope", *d, "--max-position", "1", "--alpha", "0.1")
    assert code == 0 and f"slots {len(USERS)}," in out and "90% interval" in out
    assert [line.split()[0] for line in out.splitlines()[3:7]] == ["logging", "ips", "snips", "dr"]
    # an arm's settings on the version: other pages, still a run
    over = json.dumps({"head_weights": {"engage": -1}})
    code, out, _ = run(monkeypatch, capsys, "experiment", "ope", *d, "--overrides", over, "--json")
    assert code == 0 and json.loads(out)["matched"] < doc["matched"]


def test_cli_ope_bad_input_is_one_line_and_exit_2(served, tmp_path, monkeypatch, capsys):
    data, version, _, _ = served
    empty = tmp_path / "empty"
    shutil.copytree(data, empty, ignore=shutil.ignore_patterns("events"))
    d = ["--data-dir", str(data)]
    bad = [  # (argv, what the one line must say)
        (["--policy", "20990101-000000.000-ffffff", *d], "not found; known versions"),
        (["--policy", version, *d, "--since", "last week"], "--since: 'last week' is not a time"),
        (["--policy", version, *d, "--since", "2099-01-01"], "no logged impressions with propensities"),
        (["--policy", version, *d, "--overrides", "{bad"], "--overrides: is not JSON"),
        (["--policy", version, *d, "--overrides", '{"rerank": {"mmr_lambda": 3}}'],
         "--overrides.rerank.mmr_lambda"),
        (["--policy", version, "--data-dir", str(tmp_path / "nope")], "does not exist"),
        (["--policy", version, "--data-dir", str(empty)], "no logged impressions"),
    ]  # fmt: skip
    for argv, says in bad:
        code, out, err = run(monkeypatch, capsys, "experiment", "ope", *argv)
        assert code == 2 and says in err and len(err.strip().splitlines()) == 1 and not out, (argv, err)
