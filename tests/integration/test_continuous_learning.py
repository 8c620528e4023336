"""Continuous learning: items PUT between retrains are indexed at once and kept by the worker's retrain;
items DELETEd leave the indexes at that retrain, and /metrics shows index size against listed items.

The session's trained directory, retrained once with a content source in its recipe (so a new
item can be embedded without retraining), served in process (the FastAPI app: service, hot swap,
monitoring collector). A PUT item is in the content index right away; four DELETEs lower
``funnel_listed_items`` at once while the indexes keep them (ratio above 1); after enough new
events the worker retrains with the live recipe (content source kept), the server swaps the
version in, and every ANN index holds exactly the listed catalogue: the new item in, the
unlisted ones out; an item PUT after v2 was trained is embedded into v2 as it is swapped in.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from funnel.api.app import create_app
from funnel.api.worker import Worker
from funnel.engine import Engine
from funnel.training.gates import GateConfig

SOURCES = {"als": {}, "item_knn": {}, "content": {"embedder": "tfidf"}, "new_items": {}, "trending": {}}
# the gate is tested elsewhere: here any version trained on the new events may go live
LENIENT = GateConfig(min_window_users=1, ndcg_tolerance=1.0, max_coverage_drop=1.0, max_diversity_drop=1.0)


def _gauges(client: TestClient) -> dict[str, float]:
    text = client.get("/metrics").text
    out = {
        m[1]: float(m[2]) for m in re.finditer(r'^funnel_index_items\{source="(\w+)"\} (\S+)$', text, re.M)
    }
    out["listed"] = float(re.search(r"^funnel_listed_items (\S+)$", text, re.M)[1])  # type: ignore[index]
    return out


def _indexed(engine: Engine, source: str) -> set[str]:
    """The item ids an ANN index of the served pipeline can return (an exact index: all of them)."""
    pipeline = engine.pipeline(catch_up=False)
    index = pipeline.ranking.pipeline.retriever_.sources_[source].index_  # type: ignore[union-attr]
    ids, _ = index.search(np.ones((1, index.dim), np.float32), len(index))
    return set(pipeline.bundle.items.keys_of(ids[0][ids[0] >= 0]))


def test_worker_retrain_keeps_new_items_and_purges_unlisted_ones(api_data_template: Path, tmp_path: Path):
    data = tmp_path / "data"
    shutil.copytree(api_data_template, data)
    engine = Engine(data)
    v1 = engine.train(ranking={"sources": SOURCES}, force=True).version
    client = TestClient(create_app(engine))
    client.app.state.service.swapper.poll_s = 0.0
    assert client.get("/v1/recommendations", params={"user_id": "u000001"}).json()["model_version"] == v1
    before = _gauges(client)
    assert before == {"als": 80, "content": 80, "listed": 80}

    new = {"title": "Quiet harbour", "description": "A slow film about boats", "categories": ["drama"]}
    assert client.put("/v1/items/new-1", json=new).status_code == 202
    gone = sorted(_indexed(engine, "als"))[:4]
    for item in gone:
        assert client.delete(f"/v1/items/{item}").status_code == 204
    between = _gauges(client)  # new-1 embedded without a retrain; the unlisted ones still indexed
    assert between == {"als": 80, "content": 81, "listed": 77}
    assert "new-1" in _indexed(engine, "content") and set(gone) <= _indexed(engine, "content")

    rng = np.random.default_rng(0)
    users = engine.pipeline(catch_up=False).bundle.users.keys.to_pylist()
    listed = sorted(_indexed(engine, "als") - set(gone))
    now = int(time.time() * 1000)
    events = [
        {"user_id": u, "item_id": str(rng.choice(listed)), "action": "click", "timestamp": now + i}
        for i, u in enumerate(users * 3)
    ]
    assert client.post("/v1/interactions", json=events).status_code == 202
    worker = Worker(engine, retrain_events=len(events), gate=LENIENT)
    assert worker.run_once() == f"retrained on {len(events)} new event(s)"
    v2 = engine.registry.live()
    assert v2 != v1 and engine.registry.manifest(v2).config["ranking"] == {"sources": SOURCES}
    assert worker.index_report == {"version": v2, "listed": 77, "indexes": {"als": 77, "content": 77}}

    late = {"title": "Late arrival", "description": "Put after v2 was trained", "categories": ["drama"]}
    assert client.put("/v1/items/new-2", json=late).status_code == 202  # v2 never saw it
    client.get("/v1/recommendations", params={"user_id": "u000001"})  # notices the new version
    assert client.app.state.service.swapper.wait(60)
    page = client.get("/v1/recommendations", params={"user_id": "u000001"}).json()
    assert page["model_version"] == v2
    # index size = listed catalogue; new-2 was embedded into v2 at the swap (ALS cannot embed it)
    assert _gauges(client) == {"als": 77, "content": 78, "listed": 78}
    assert "new-2" in _indexed(engine, "content")
    for source in ("als", "content"):
        held = _indexed(engine, source)
        assert "new-1" in held and not held & set(gone), source
