"""The API's ASGI middleware: a request id on every request, a body-size cap, latency metrics.

Pure ASGI (no ``BaseHTTPMiddleware``: it would copy every body and cost a task per request).

* ``x-request-id``: taken from the request when the client sent a sane one, else a new uuid4;
  set on ``scope["state"]`` for the handlers and echoed on the response.
* Bodies over ``max_body_bytes`` get 413: at once when ``content-length`` says so, or as soon as a
  chunked body crosses the cap (the read raises, the error handler answers).
* ``funnel_request_seconds{route,method,status}``: the route's path template, never the raw path
  (ids in paths would explode the label set).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from funnel.api.metrics import ApiMetrics

_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class ApiMiddleware:
    """See the module docstring."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics, max_body_bytes: int) -> None:
        self.app, self.metrics, self.max_body_bytes = app, metrics, max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one ASGI connection scope."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope.get("headers") or [])
        given = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = given if _SANE_ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        status = {"code": 500}
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            await self._too_large(rid, send)
            self._observe(scope, 413, started)
            return

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                hdrs = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                message["headers"] = [*hdrs, (b"x-request-id", rid.encode())]
            await send(message)

        seen = {"bytes": 0}

        async def capped_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                seen["bytes"] += len(message.get("body", b""))
                if seen["bytes"] > self.max_body_bytes:
                    raise HTTPException(413, f"the body exceeds {self.max_body_bytes} bytes")
            return message

        try:
            await self.app(scope, capped_receive, send_with_id)
        finally:
            self._observe(scope, status["code"], started)

    async def _too_large(self, rid: str, send: Send) -> None:
        message = f"the body exceeds {self.max_body_bytes} bytes"
        error = {"code": "too_large", "message": message, "field": "body"}
        body = json.dumps({"error": error, "request_id": rid}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-request-id", rid.encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
        self.metrics.errors.labels(code="too_large").inc()

    def _observe(self, scope: Scope, status: int, started: float) -> None:
        route: Any = scope.get("route")
        path = getattr(route, "path", None) or "unmatched"
        self.metrics.requests.labels(route=path, method=scope.get("method", ""), status=str(status)).observe(
            time.perf_counter() - started
        )
