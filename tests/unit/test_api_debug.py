"""``GET /v1/recommendations?debug=true``: the request trace, its parts agreeing with each other and
with what was served, its fallbacks, and no tracing work on a normal request.

The app serves a copy of the session's trained data directory (``api_data_template``: 60 users,
80 items, retrieval + ranker + re-ranker) with the sources asked one after the other (no deadline),
so two identical requests get identical pages.
"""

from __future__ import annotations

import shutil

import pytest
from fastapi.testclient import TestClient

import funnel.api.service as service_module
from funnel.api.app import ApiSettings, create_app
from funnel.api.auth import ApiKeys
from funnel.engine import Engine
from funnel.pipeline import Pipeline

READ, ADMIN = "rk-debug-read-SECRET", "ak-debug-admin-SECRET"
USER, COUNTRY = "u000001", "US"
STAGES = {"catch_up", "pipeline", "retrieval", "features", "ranking", "rerank"}


@pytest.fixture(scope="module")
def client(api_data_template, tmp_path_factory):
    data = tmp_path_factory.mktemp("debug") / "data"
    shutil.copytree(api_data_template, data)
    keys = ApiKeys({READ: ["read"], ADMIN: ["admin"]})
    with TestClient(
        create_app(Engine(data), api_keys=keys, settings=ApiSettings(source_deadline_ms=None))
    ) as c:
        yield c


def _get(client, key=ADMIN, **params):
    r = client.get("/v1/recommendations", params={"user_id": USER, **params}, headers={"x-api-key": key})
    assert r.status_code == 200, r.text
    return r.json()


def _ids(body):
    return [item["item_id"] for item in body["items"]]


def _pipeline(client) -> Pipeline:
    return client.app.state.service.engine.pipeline(catch_up=False)


def _broken(*args, **kwargs):
    raise RuntimeError("model file corrupted")


def test_read_scope_gets_403_and_no_debug_means_no_trace(client):
    r = client.get(
        "/v1/recommendations", params={"user_id": USER, "debug": "true"}, headers={"x-api-key": READ}
    )
    assert r.status_code == 403 and "admin" in r.json()["error"]["message"]
    assert _get(client, READ)["debug"] is None
    assert _get(client, ADMIN)["debug"] is None


def test_admin_gets_every_part_and_sources_match_the_retriever(client):
    body = _get(client, debug="true", limit=10)
    retriever = _pipeline(client).ranking.pipeline.retriever_
    trace = body["debug"]
    assert trace["path"] == "ranking" and trace["fallback"] is None and trace["notes"] == []
    assert set(trace["timings_ms"]) >= STAGES and all(v >= 0 for v in trace["timings_ms"].values())
    sources = {s["name"]: s for s in trace["retrieval"]["sources"]}
    assert {n: s["count"] for n, s in sources.items()} == retriever.last_counts_
    assert sum(s["count"] for s in sources.values()) >= trace["retrieval"]["merged"] > 0
    for s in sources.values():
        assert [c["rank"] for c in s["top"]] == list(range(min(10, s["count"])))
    ranking = trace["ranking"]
    assert ranking["candidates"] == trace["retrieval"]["merged"]
    ranker = _pipeline(client).ranking.pipeline.ranker_
    assert set(ranking["weights"]) == set(ranker.boosters_)
    for item in ranking["items"]:
        assert set(item["heads"]) == set(ranker.boosters_)
        assert list(item["features"]) == list(ranker.feature_names_)
    steps = [s["step"] for s in trace["rerank"]["steps"]]
    assert steps[: len(steps)] and {"seen", "policy", "exploration"} <= set(steps)
    assert trace["served"] == _ids(body)


def test_features_agree_with_the_sources_they_came_from(client):
    trace = _get(client, debug="true", limit=10)["debug"]
    ranked = {item["item_id"]: item for item in trace["ranking"]["items"]}
    checked = 0
    for source in trace["retrieval"]["sources"]:
        for cand in source["top"]:
            if cand["item_id"] in ranked:
                features = ranked[cand["item_id"]]["features"]
                assert features[f"src_{source['name']}_rank"] == cand["rank"]
                assert features[f"src_{source['name']}_score"] == pytest.approx(cand["score"], rel=1e-6)
                checked += 1
    assert checked > 0


def test_final_scores_are_the_weighted_heads_in_the_order_before_reranking(client):
    body = _get(client, debug="true", limit=10)
    trace = body["debug"]
    ranking = trace["ranking"]
    ranks = [item["rank"] for item in ranking["items"]]
    scores = [item["score"] for item in ranking["items"]]
    assert ranks == sorted(ranks) and ranks[:10] == list(range(10))
    assert scores == sorted(scores, reverse=True)
    for item in ranking["items"]:
        weighted = sum(ranking["weights"][h] * p for h, p in item["heads"].items())
        assert item["score"] == pytest.approx(weighted, abs=1e-9)
    # the served items' trace scores are the scores served, unless a step rescored them
    rescored = {i for s in trace["rerank"]["steps"] for i in s["rescored"]}
    by_id = {item["item_id"]: item for item in ranking["items"]}
    served = {item["item_id"]: item["score"] for item in body["items"]}
    for item_id, score in served.items():
        if item_id in by_id and item_id not in rescored:
            assert score == pytest.approx(by_id[item_id]["score"], rel=1e-5)
    # every served item is detailed with its place; moves are exactly those whose place changed
    positions = {i: p for p, i in enumerate(trace["served"])}
    for item_id in served:
        if item_id in by_id:
            assert by_id[item_id]["position"] == positions[item_id]
    moved = {m["item_id"]: (m["rank"], m["position"]) for m in trace["rerank"]["moves"]}
    for item_id, p in positions.items():
        rank = by_id[item_id]["rank"] if item_id in by_id else None
        assert (item_id in moved) == (rank != p) and moved.get(item_id, (rank, p)) == (rank, p)


def test_removed_items_never_appear_in_the_page(client):
    first = _get(client, limit=5)
    # the pipeline's list depends on how many ids are excluded: hold that count at 6 (cursor + 1)
    probe = _get(client, limit=5, cursor=first["next_cursor"], exclude="no-such-item")
    excluded = _ids(probe)[0]
    second = _get(client, debug="true", limit=5, cursor=first["next_cursor"], exclude=excluded)
    trace = second["debug"]
    removed = {r["item_id"]: r["reason"] for s in trace["rerank"]["steps"] for r in s["removed"]}
    assert removed and not set(removed) & set(_ids(second)) and excluded not in _ids(second)
    assert removed[excluded] == "exclude"
    assert {removed[i] for i in _ids(first) if i in removed} == {"cursor"}
    request_step = next(s for s in trace["rerank"]["steps"] if s["step"] == "request")
    assert request_step["removed_total"] == len(request_step["removed"])


def test_the_trace_is_of_the_page_a_normal_request_serves(client):
    for user in (USER, "u000017", "somebody-new"):
        plain = _get(client, user_id=user, limit=8, country=COUNTRY)
        traced = _get(client, user_id=user, limit=8, country=COUNTRY, debug="true")
        assert _ids(traced) == _ids(plain) and traced["debug"]["served"] == _ids(plain)


def test_a_failing_ranker_traces_the_retrieval_order(client, monkeypatch):
    plain = _get(client, limit=5)
    monkeypatch.setattr(_pipeline(client).ranking.pipeline.ranker_, "predict_heads", _broken)
    body = _get(client, debug="true", limit=5)
    trace = body["debug"]
    assert trace["path"] == trace["fallback"] == body["fallback"] == "retrieval_order"
    assert "model file corrupted" in trace["notes"][0]
    assert trace["retrieval"]["sources"] and trace["served"] == _ids(body) != _ids(plain)
    items = trace["ranking"]["items"]
    assert items and all(i["heads"] == {} and i["features"] == {} for i in items)
    assert [i["score"] for i in items[:3]] == [0.0, -1.0, -2.0]  # the retrieval order


def test_a_failing_ranking_pipeline_traces_the_baseline(client, monkeypatch):
    monkeypatch.setattr(_pipeline(client).ranking, "recommend", _broken)
    body = _get(client, debug="true", limit=5, country=COUNTRY)
    trace = body["debug"]
    assert trace["path"] == trace["fallback"] == "baseline" and "model file corrupted" in trace["notes"][0]
    assert "rerank" not in trace["timings_ms"] and trace["served"] == _ids(body)
    assert {s["step"] for s in trace["rerank"]["steps"]} <= {"request", "popular_top_up"}
    assert trace["ranking"]["items"] and trace["ranking"]["weights"] == {}


def test_a_baseline_only_bundle_says_so(client, monkeypatch):
    monkeypatch.setattr(_pipeline(client), "ranking", None)
    body = _get(client, debug="true", limit=5)
    trace = body["debug"]
    assert trace["path"] == "baseline" and "no ranking pipeline" in trace["notes"][0]
    assert trace["retrieval"] is None and trace["timings_ms"]["baseline"] >= 0
    assert trace["served"] == _ids(body)


def test_a_failing_pipeline_traces_the_popular_items(client, monkeypatch):
    monkeypatch.setattr(_pipeline(client), "recommend", _broken)
    body = _get(client, user_id="somebody-new", debug="true", limit=5, country=COUNTRY)
    trace = body["debug"]
    assert trace["path"] == trace["fallback"] == "popular" and trace["served"] == _ids(body)
    pipeline = _pipeline(client)
    popular = pipeline.bundle.items.keys_of(pipeline.popular(len(trace["ranking"]["items"])))
    assert [i["item_id"] for i in trace["ranking"]["items"]] == popular


def test_no_tracing_work_without_debug(client, monkeypatch):
    ranker = _pipeline(client).ranking.pipeline.ranker_
    heads, calls = ranker.predict_heads, []

    def counted(X, *args):
        calls.append(len(X))
        return heads(X, *args)

    monkeypatch.setattr(ranker, "predict_heads", counted)
    with monkeypatch.context() as m:
        m.setattr(service_module, "RequestTrace", _broken)  # never built on the normal path
        _get(client, limit=5)
    _get(client, debug="true", limit=5)
    assert len(calls) == 2 and calls[0] == calls[1] > 0  # one scoring pass each, traced or not
