"""From serving to the skew alarm: the API logs the feature rows it scores, the monitor compares them.

Each test copies the session's trained data directory (``api_data_template``: 60 users, 80 items,
retrieval + ranker), opens the in-process API over an :class:`~funnel.engine.Engine` with served
feature sample rate 1.0, and serves every user a page, logs 60 interactions through
``POST /v1/interactions`` (just after the data clock: the online store streams them), and serves
every user again — about 120 requests, ~8500 candidate rows in ``<data_dir>/served_features/``.
Then the monitoring report's collection (:func:`funnel.monitoring.report.collect`, what
``funnel report`` runs) recomputes those rows offline from the live bundle's features lake and
the event log, and ``/metrics`` exports the result.

* As served: PSI 0 on all 48 numeric features, no served value differs from its recomputation,
  ``feature_skew`` ok (``funnel_alarm{name="feature_skew"} 0``).
* A planted online skew — ``user_positive_count_30d`` × 1.5 in what the online feature server
  computes (so served, scored and logged alike) — fires ``feature_skew`` naming that feature, and
  only that one moves.
* The deployment path: ``funnel serve --served-feature-sample 1`` (a real process) writes the rows
  of the pages it serves to its data directory's log within the writer's flush interval; calls
  without a request id (``Engine.recommend``, batch scoring) write nothing.
"""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

import funnel.features.serving as feature_serving
from funnel.api.app import create_app
from funnel.data.lake import Lake
from funnel.engine import Engine
from funnel.monitoring.report import collect
from funnel.monitoring.skew import SERVED_DIR, read_served
from tests.integration.api_server import ApiServer

PLANTED = "user_positive_count_30d"  # user-level, wide, non-zero on ~80% of the served rows here
ACTIONS = ("click", "like", "watch", "view")


def serve_and_collect(template, dest):
    """Serve two rounds of pages around 60 logged interactions; the report's data and the API's view."""
    shutil.copytree(template, dest)
    engine = Engine(dest, served_feature_sample=1.0)
    responses = []
    with TestClient(create_app(engine)) as client:
        pipeline = engine.pipeline()
        clock = pipeline.ranking.now_ms
        users = sorted(pipeline.bundle.users.keys_of(np.arange(len(pipeline.bundle.users))))
        items = pipeline.bundle.items.keys_of(np.arange(len(pipeline.bundle.items)))
        rng = np.random.default_rng(0)
        for user in users:
            responses.append(client.get("/v1/recommendations", params={"user_id": user, "limit": 10}))
        events = [
            {"event_id": f"e{k}", "user_id": users[k % len(users)], "item_id": str(rng.choice(items)),
             "action": ACTIONS[k % len(ACTIONS)], "timestamp": clock + 1_000 * k}
            for k in range(60)
        ]  # fmt: skip
        assert client.post("/v1/interactions", json=events).status_code == 202
        for user in users:
            responses.append(client.get("/v1/recommendations", params={"user_id": user, "limit": 10}))
        assert all(r.status_code == 200 for r in responses)
        assert engine.served_log.flush()
        data = collect(dest)  # beside the running API, as funnel report runs beside funnel serve
        metrics = client.get("/metrics").text
    engine.close()
    return data, metrics, responses


@pytest.fixture
def planted(monkeypatch):
    """Scale ``PLANTED`` by 1.5 in every vector the online feature server computes."""
    compute = feature_serving.compute

    def skewed(*args, **kwargs):
        user, items = compute(*args, **kwargs)
        user[PLANTED] = 1.5 * user[PLANTED]
        return user, items

    monkeypatch.setattr(feature_serving, "compute", skewed)


def test_served_rows_match_offline_recomputation(api_data_template, tmp_path) -> None:
    data, metrics, responses = serve_and_collect(api_data_template, tmp_path / "data")
    lines = read_served(tmp_path / "data" / SERVED_DIR)
    by_request = {r.json()["request_id"]: r.json() for r in responses}
    assert len(lines) >= 100  # every request with candidates (a user may have none)
    assert {line["request_id"] for line in lines} <= set(by_request)
    rows = sum(len(line["item_ids"]) for line in lines)
    assert rows >= 50 * len(lines)  # every candidate row scored, not only the page
    for line in lines:  # the page served comes from the rows logged (popular top-ups aside)
        page = [x["item_id"] for x in by_request[line["request_id"]]["items"]]
        assert len(set(page) & set(line["item_ids"])) >= len(page) // 2
    assert len({line["t"] for line in lines}) > 1  # the clock moved with the logged events

    assert len(data.skews) == 48
    assert max(s.psi for s in data.skews) < 0.01
    assert max(s.mismatch_share for s in data.skews) == 0.0
    alarm = {a.name: a for a in data.alarms}["feature_skew"]
    assert alarm.status == "ok" and not alarm.firing
    assert 'funnel_alarm{name="feature_skew"} 0.0' in metrics
    assert f'funnel_feature_psi{{feature="{PLANTED}"}} 0.0' in metrics


def test_planted_online_scaling_fires_the_alarm(api_data_template, tmp_path, planted) -> None:
    data, metrics, _ = serve_and_collect(api_data_template, tmp_path / "data")
    worst = data.skews[0]
    assert worst.feature == PLANTED and worst.psi > 0.2
    assert worst.served_mean == pytest.approx(1.5 * worst.offline_mean)
    assert max(s.psi for s in data.skews[1:]) < 0.01
    alarm = {a.name: a for a in data.alarms}["feature_skew"]
    assert alarm.firing and PLANTED in alarm.message
    assert 'funnel_alarm{name="feature_skew"} 1.0' in metrics


def test_funnel_serve_logs_the_rows_it_scores_to_its_data_dir(api_data_template, tmp_path) -> None:
    data = shutil.copytree(api_data_template, tmp_path / "data")
    users = Lake(data / "lake").read("users", columns=["user_id"]).column("user_id").to_pylist()[:5]
    api = ApiServer(data, tmp_path / "serve.log", extra_args=["--served-feature-sample", "1", "--no-worker"])
    try:
        api.wait_up()
        sent = set()
        for user in users:
            r, items = api.page(user)
            assert r.status_code == 200 and items, r.text
            sent.add(r.json()["request_id"])
        deadline = time.monotonic() + 15.0  # the writer appends every second
        while {x["request_id"] for x in read_served(data / SERVED_DIR)} != sent:
            assert time.monotonic() < deadline, (read_served(data / SERVED_DIR), api.log_tail())
            time.sleep(0.2)
    finally:
        api.stop()
    assert all(line["item_ids"] for line in read_served(data / SERVED_DIR))


def test_calls_without_a_request_id_are_not_logged(api_data_template, tmp_path) -> None:
    data = shutil.copytree(api_data_template, tmp_path / "data")
    engine = Engine(data, served_feature_sample=1.0)
    users = Lake(data / "lake").read("users", columns=["user_id"]).column("user_id").to_pylist()[:5]
    assert engine.recommend(users[0], k=5)
    assert engine.recommend_batch(users, k=5)
    engine.close()
    assert read_served(data / SERVED_DIR) == [] and engine.served_log.logged == 0
