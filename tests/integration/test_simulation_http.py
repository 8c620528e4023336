"""``--http``: the simulation's day loop against a real ``funnel serve`` process.

A small world is prepared in process (history, first model), ``funnel serve`` is started on it,
and one simulated day runs over HTTP: every page is a ``GET /v1/recommendations``, every page
shown a ``POST /v1/impressions``, the clicks ``POST /v1/interactions`` and the new items
``POST /v1/items:batch``. The server's event log then holds exactly the pages and clicks the
simulation counted, and the items published during the day are in its catalogue.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from api_server import ApiServer

from funnel.core.schema import Impression, Interaction
from funnel.data.lake import Lake
from funnel.data.synthetic.config import DAY_MS
from funnel.engine import Engine
from funnel.simulation import Scenario, SimConfig
from funnel.simulation.http import Http, simulate_http
from funnel.simulation.runner import run
from funnel.simulation.world import build_world


@pytest.mark.slow
def test_one_day_over_http_goes_through_the_servers_write_path(tmp_path: Path):
    config = SimConfig(users=60, days=1, n_items=100, visits_per_day=1.0, n_estimators=5, total=50)
    scenario = Scenario(new_items_per_day=6, retrain_days=0)
    data = tmp_path / "engine"
    assert simulate_http(config, scenario, "http://127.0.0.1:9", data) is None  # prepares only
    server = ApiServer(data, tmp_path / "serve.log")
    try:
        server.wait_up()
        backend = Http(server.base)
        try:
            result = run(config, scenario, build_world(config, scenario), backend)
        finally:
            backend.close()
    finally:
        server.stop()
    day = result.days[0]
    assert day["pages"] > 20
    engine = Engine(data, served_feature_sample=0.0)
    try:
        records = engine.event_log.read(0, engine.event_log.end_offset)
    finally:
        engine.close()
    impressions = [r.event for r in records if isinstance(r.event, Impression)]
    clicks = [r.event for r in records if isinstance(r.event, Interaction) and r.event.type == "click"]
    assert len(impressions) == day["pages"]
    assert sum(len(i.item_ids) for i in impressions) == day["slots"]
    assert len(clicks) == day["clicks"] and all(c.request_id for c in clicks)
    world = build_world(config, scenario)
    morning = world.arrivals(world.start_ms, world.start_ms + DAY_MS // 2)  # visits come after them
    catalogue = set(Lake(data / "lake").read("items").column("item_id").to_pylist())
    assert len(morning) and {f"i{i:06d}" for i in morning} <= catalogue
