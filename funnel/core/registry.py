"""One registry of backends chosen by URL scheme (``memory://``, ``file://``, ``redis://``).

Example:
    >>> reg: BackendRegistry[str] = BackendRegistry("event log")
    >>> reg.register("memory", lambda url: f"memory at {url.path!r}")
    >>> reg.open("memory://")
    "memory at ''"
    >>> reg.open("s3://bucket")
    Traceback (most recent call last):
    ...
    funnel.core.errors.ConfigError: unknown event log URL scheme 's3' in 's3://bucket'; known schemes: memory
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar
from urllib.parse import ParseResult, urlparse

from funnel.core.errors import ConfigError

T = TypeVar("T")


class BackendRegistry(Generic[T]):
    """Maps URL schemes to factories for one role (event log, online store, ANN index, ...)."""

    def __init__(self, role: str) -> None:
        self.role = role
        self._factories: dict[str, Callable[[ParseResult], T]] = {}

    def register(self, scheme: str, factory: Callable[[ParseResult], T]) -> None:
        """Register ``factory`` for URLs starting with ``scheme://``."""
        self._factories[scheme] = factory

    @property
    def schemes(self) -> list[str]:
        """The known schemes, sorted."""
        return sorted(self._factories)

    def open(self, url: str) -> T:
        """Build the backend for ``url``; raise :class:`ConfigError` listing the known schemes."""
        parsed = urlparse(url)
        factory = self._factories.get(parsed.scheme)
        if factory is None:
            known = ", ".join(self.schemes) or "(none registered)"
            raise ConfigError(
                f"unknown {self.role} URL scheme {parsed.scheme!r} in {url!r}; known schemes: {known}"
            )
        return factory(parsed)
