"""``POST /v1/impressions`` with ``sources``: stored with the impression, counted per source by the monitor.

In process (FastAPI TestClient) over a copy of the session's trained data directory, as
tests/unit/test_api.py does: a page is served, its impression is logged with each item's
``reason_code`` as its source, one slot is clicked (``request_id`` + ``item_id``); the event log
holds the labels, and both the quality monitor over the log and ``/metrics``
(``funnel_source_click_share{source}``) attribute the click to that slot's source.
"""

from __future__ import annotations

import shutil

import pytest
from fastapi.testclient import TestClient

from funnel.api.app import create_app
from funnel.core.schema import Impression
from funnel.engine import Engine
from funnel.monitoring.frame import Catalogue, EventFrame
from funnel.monitoring.quality import QualityMonitor

USER = "u000001"


@pytest.fixture
def fresh(api_data_template, tmp_path):
    """A writable open app of its own and its engine."""
    dest = tmp_path / "data"
    shutil.copytree(api_data_template, dest)
    app = create_app(Engine(dest))
    with TestClient(app) as client:
        yield client, app.state.service.engine


def _error(response, status: int, field: str) -> str:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["field"] == field, error
    return error["message"]


def test_sources_reach_the_log_and_the_per_source_click_monitor(fresh):
    client, engine = fresh
    r = client.get("/v1/recommendations", params={"user_id": USER, "limit": 5})
    assert r.status_code == 200, r.text
    page, rid = r.json()["items"], r.json()["request_id"]
    shown = [x["item_id"] for x in page]
    sources = [x["reason_code"] for x in page]
    assert len(shown) == 5 and all(sources)
    body = {"request_id": rid, "user_id": USER, "items_shown": shown, "positions": list(range(5)),
            "sources": sources}  # fmt: skip
    assert client.post("/v1/impressions", json=body).status_code == 202
    click = {"user_id": USER, "item_id": shown[1], "action": "click", "request_id": rid}
    assert client.post("/v1/interactions", json=click).status_code == 202

    records = engine.event_log.read(0, 10)
    impression = records[0].event
    assert isinstance(impression, Impression)
    assert impression.sources == tuple(sources) and impression.item_ids == tuple(shown)

    frame = EventFrame.from_events(records)
    catalogue = Catalogue.from_items(engine.lake.read("items"))
    snap = QualityMonitor(frame, catalogue).at(impression.timestamp, impression.timestamp + 60_000)
    assert snap.slots == 5 and snap.clicks == 1
    stats = snap.sources
    assert set(stats) == set(sources)  # no "unknown": every slot labelled
    assert stats[sources[1]].click_share == 1.0
    assert sum(s.slots for s in stats.values()) == 5

    metrics = client.get("/metrics").text
    assert f'funnel_source_click_share{{source="{sources[1]}"}} 1.0' in metrics
    assert 'source="unknown"' not in metrics


def test_impressions_without_sources_count_under_unknown(fresh):
    client, engine = fresh
    body = {"request_id": "r1", "user_id": USER, "items_shown": ["i000001", "i000002"], "positions": [0, 1]}
    assert client.post("/v1/impressions", json=body).status_code == 202
    assert engine.event_log.read(0, 1)[0].event.sources is None
    assert 'funnel_source_click_share{source="unknown"}' in client.get("/metrics").text


def test_sources_are_validated_like_propensities(fresh):
    client, engine = fresh
    page = {"request_id": "r1", "user_id": USER, "items_shown": ["i000001", "i000002"], "positions": [0, 1]}
    message = _error(client.post("/v1/impressions", json={**page, "sources": ["als"]}), 422, "sources")
    assert "one per item" in message
    for bad in ([], ["als", ""], ["als", "   "], ["als", 3], "als"):
        r = client.post("/v1/impressions", json={**page, "sources": bad})
        assert r.status_code == 422, (bad, r.text)
        assert "sources" in r.json()["error"]["field"], (bad, r.json())
    assert engine.event_log.end_offset == 0
    both = {**page, "sources": ["als", "trending"], "propensities": [1.0, 0.5]}
    assert client.post("/v1/impressions", json=both).status_code == 202
    assert engine.event_log.read(0, 1)[0].event.sources == ("als", "trending")
