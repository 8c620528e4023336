"""The simulation over HTTP: the same day loop against a running ``funnel serve``.

:class:`Http` is a :class:`~funnel.simulation.backend.Backend` that asks
``GET /v1/recommendations`` (one request per page), writes ``POST /v1/impressions`` (one per
page, with the response's propensities) and ``POST /v1/interactions`` (the batch's clicks, up to
1000 per call), and publishes new items with ``POST /v1/items:batch``. The server folds events
in itself (its pages reflect the user's clicks) and its worker retrains on the server's own
schedule (``funnel serve``'s ``--retrain-events``), so the scenario's ``retrain_days`` and its
serving settings do not apply over HTTP: the server's configuration does.

The server must serve an engine prepared for this world: :func:`simulate_http` prepares
``data_dir`` when it holds no engine yet (world, history, first model) and stops there, saying
which ``funnel serve`` to start; run it again once the server is up.

Example:
    funnel simulate --users 300 --days 2 --data-dir sim/ --http http://127.0.0.1:8000   # prepares
    funnel serve --data-dir sim/default --port 8000 &
    funnel simulate --users 300 --days 2 --data-dir sim/ --http http://127.0.0.1:8000   # simulates
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pyarrow as pa

from funnel.core.errors import ConfigError, UnavailableError
from funnel.simulation.backend import Served
from funnel.simulation.config import Scenario, SimConfig
from funnel.simulation.runner import SimResult, prepare, run
from funnel.simulation.world import build_world

MAX_EVENTS = 1000
"""Events per ``POST /v1/interactions`` (the API's batch limit)."""


class Http:
    """A running server at ``base_url`` (see the module docstring)."""

    def __init__(self, base_url: str, timeout_s: float = 60.0, api_key: str | None = None) -> None:
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout_s, headers=headers)

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code >= 400:
            raise UnavailableError(
                f"{response.request.method} {response.request.url.path}: {response.text[:300]}"
            )
        return response

    def recommend(self, user_ids: list[str], k: int) -> list[Served]:
        """One ``GET /v1/recommendations`` per user."""
        out = []
        for user in user_ids:
            body = self._check(
                self.client.get("/v1/recommendations", params={"user_id": user, "limit": k})
            ).json()
            items = body["items"]
            out.append(Served([x["item_id"] for x in items], [x["propensity"] for x in items]))
        return out

    def write(self, impressions: list[dict[str, Any]], clicks: list[dict[str, Any]]) -> None:
        """The pages shown, then their clicks (the server makes both durable before answering)."""
        for imp in impressions:
            if not imp["item_ids"]:
                continue
            body = {k: v for k, v in imp.items() if k not in ("item_ids", "arm")}
            body["items_shown"] = imp["item_ids"]
            self._check(self.client.post("/v1/impressions", json=body))
        events = [
            {
                "event_id": c["event_id"],
                "user_id": c["user_id"],
                "item_id": c["item_id"],
                "action": c["type"],
                "request_id": c["request_id"],
                "timestamp": c["timestamp"],
            }
            for c in clicks
        ]
        for lo in range(0, len(events), MAX_EVENTS):
            self._check(self.client.post("/v1/interactions", json=events[lo : lo + MAX_EVENTS]))

    def add_items(self, rows: pa.Table) -> None:
        """``POST /v1/items:batch`` (at most 1000 at a time)."""
        items = []
        for row in rows.to_pylist():
            published = row.get("published_at")
            items.append({
                "item_id": row["item_id"], "title": row.get("title"), "description": row.get("description"),
                "categories": row.get("categories") or [], "tags": row.get("tags") or [],
                "creator_id": row.get("creator_id"),
                "published_at": None if published is None else int(published.timestamp() * 1000),
                "attributes": json.loads(row["attributes"]) if row.get("attributes") else {},
            })  # fmt: skip
        for lo in range(0, len(items), 1000):
            self._check(self.client.post("/v1/items:batch", json={"items": items[lo : lo + 1000]}))

    def retrain(self) -> dict[str, Any]:
        """Nothing to do: the server's worker retrains on its own schedule."""
        return {"status": "server", "gate_passed": None}

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()


def simulate_http(
    config: SimConfig, scenario: Scenario, base_url: str, data_dir: str | Path
) -> SimResult | None:
    """Run ``scenario``'s world against the server at ``base_url``; ``None`` after preparing only.

    ``data_dir``: the engine directory the server serves; prepared (and nothing simulated) when it
    holds no engine yet.
    """
    data_dir = Path(data_dir)
    if not (data_dir / "models").exists():
        _, engine = prepare(config, scenario, data_dir)
        engine.close()
        return None
    backend = Http(base_url)
    try:
        backend._check(backend.client.get("/healthz"))
    except httpx.HTTPError as exc:
        raise ConfigError(f"no funnel server answers at {base_url} ({exc}): start `funnel serve`") from exc
    try:
        return run(config, scenario, build_world(config, scenario), backend)
    finally:
        backend.close()
