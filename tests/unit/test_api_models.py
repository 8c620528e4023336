"""Admin API of the model registry: scopes, list/show, promote (force for rejected), rollback, errors."""

from __future__ import annotations

import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from funnel.api.app import create_app
from funnel.api.auth import ApiKeys
from funnel.engine import Engine

KEYS = {"admin-key": ["admin", "read", "write"], "read-key": ["read", "write"]}
ADMIN = {"authorization": "Bearer admin-key"}
T0 = 1_700_000_000


@pytest.fixture
def setup(tmp_path):
    """Two versions: v1 live (pop), v2 rejected (no held-out events after v1's data)."""
    engine = Engine(tmp_path / "d")
    engine.import_interactions(
        pa.table({"user_id": ["u1", "u1", "u2", "u3"], "item_id": ["a", "b", "a", "c"],
                  "timestamp": [T0, T0 + 1, T0 + 2, T0 + 3]})
    )  # fmt: skip
    v1 = engine.train(model="pop").version
    v2 = engine.train(model="itemknn")
    assert v2.status == "rejected"
    with TestClient(create_app(engine, api_keys=ApiKeys(KEYS))) as client:
        yield client, engine, v1, v2.version
    engine.close()


def _error(r, status, code, field=None):
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert body["code"] == code and body["field"] == field
    return body["message"]


def test_every_route_needs_the_admin_scope(setup):
    client, engine, v1, v2 = setup
    routes = [("GET", "/v1/models"), ("GET", f"/v1/models/{v1}"), ("POST", f"/v1/models/{v2}/promote"),
              ("POST", "/v1/models/rollback")]  # fmt: skip
    for method, path in routes:
        _error(client.request(method, path), 401, "unauthenticated")
        message = _error(client.request(method, path, headers={"x-api-key": "read-key"}), 403, "forbidden")
        assert "admin" in message
    assert engine.model_version == v1  # nothing was promoted on the way


def test_list_and_show_report_status_reason_and_gate(setup):
    client, _, v1, v2 = setup
    body = client.get("/v1/models", headers=ADMIN).json()
    assert body["live"] == v1 and body["previous"] is None
    assert [(m["version"], m["status"]) for m in body["versions"]] == [(v1, "live"), (v2, "rejected")]
    assert body["versions"][0]["reason"] is None and body["versions"][1]["ndcg"] is None
    assert body["versions"][1]["reason"].startswith("only 0 user(s)")
    detail = client.get(f"/v1/models/{v2}", headers=ADMIN).json()
    assert detail["parent_version"] == v1 and detail["config"]["model"] == "itemknn"
    assert detail["config_hash"].startswith("sha256:") and detail["feature_version"]
    assert detail["metrics"]["gate"]["passed"] is False
    assert detail["data_window"]["n_interactions"] == 4
    _error(client.get("/v1/models/nope", headers=ADMIN), 404, "not_found")
    _error(client.get("/v1/models/.hidden", headers=ADMIN), 422, "invalid", "version")


def test_promote_needs_force_for_a_rejected_version_and_rollback_undoes_it(setup):
    client, engine, v1, v2 = setup
    message = _error(client.post(f"/v1/models/{v2}/promote", headers=ADMIN), 422, "invalid", "force")
    assert "rejected by the gate" in message and engine.model_version == v1
    r = client.post(f"/v1/models/{v2}/promote", params={"force": "true"}, headers=ADMIN)
    assert r.status_code == 200 and r.json() == {"live": v2, "previous": v1}
    assert engine.model_version == v2
    assert client.get("/v1/recommendations", params={"user_id": "u3"}, headers=ADMIN).status_code == 200
    r = client.post("/v1/models/rollback", headers=ADMIN)
    assert r.status_code == 200 and r.json() == {"live": v1, "previous": v2}
    _error(client.post("/v1/models/rollback", headers=ADMIN), 409, "conflict")
    _error(client.post("/v1/models/nope/promote", headers=ADMIN), 404, "not_found")
    assert engine.model_version == v1
