"""FastAPI dependencies shared by the routers: the service, and scope checks on the API key."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Request
from starlette.exceptions import HTTPException

from funnel.api.auth import ApiKeys, grants
from funnel.api.service import RecommendationService

ALL_SCOPES = frozenset({"admin", "read", "write"})


async def service(request: Request) -> RecommendationService:
    """The app's :class:`RecommendationService`.

    The dependencies here are ``async``: they do no I/O, and FastAPI runs a plain ``def``
    dependency in its thread pool — a thread hand-off per dependency per request.
    """
    return request.app.state.service  # type: ignore[no-any-return]


def key_scopes(request: Request) -> frozenset[str]:
    """The scopes of the request's API key (every scope when the app has no keys configured)."""
    keys: ApiKeys = request.app.state.api_keys
    if keys.open:
        return ALL_SCOPES
    auth = request.headers.get("authorization", "")
    key = auth[7:].strip() if auth[:7].lower() == "bearer " else request.headers.get("x-api-key", "")
    if not key:
        raise HTTPException(
            401,
            "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'",
            headers={"www-authenticate": "Bearer"},
        )
    scopes = keys.scopes_of(key)
    if scopes is None:
        raise HTTPException(401, "unknown API key", headers={"www-authenticate": "Bearer"})
    return scopes


def require(scope: str) -> Callable[[Request], Awaitable[frozenset[str]]]:
    """A dependency that lets a request through only when its key has ``scope`` (else 401/403)."""

    async def check(request: Request) -> frozenset[str]:
        scopes = key_scopes(request)
        if not grants(scopes, scope):
            raise HTTPException(403, f"this API key lacks the {scope!r} scope")
        return scopes

    check.__name__ = f"require_{scope}"
    return check
