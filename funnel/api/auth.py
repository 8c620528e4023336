"""API keys with scopes: ``read`` (recommendations), ``write`` (events), ``admin`` (everything).

Keys come from the environment variable ``FUNNEL_API_KEYS`` or a JSON file, both shaped
``{"<key>": ["read", "write"], ...}``. Only SHA-256 digests of the keys are kept in memory and
compared in constant time; a key never appears in a log line or an error message. A request
presents its key as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. No header → 401;
a valid key without the scope → 403. ``admin`` implies ``read`` and ``write``.

With no keys configured, :class:`ApiKeys` is *open* (every request has every scope): the
embedded default on a loopback address. ``funnel serve`` refuses to bind a non-loopback address
without keys.

Example:
    >>> keys = ApiKeys.from_json('{"s3cret": ["read"]}')
    >>> keys.scopes_of("s3cret"), keys.scopes_of("nope")
    (frozenset({'read'}), None)
    >>> ApiKeys.from_json('{"k": ["root"]}')
    Traceback (most recent call last):
    ...
    funnel.core.errors.ConfigError: FUNNEL_API_KEYS: unknown scope 'root'; known: admin, read, write
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path

from funnel.core.errors import ConfigError

SCOPES = ("admin", "read", "write")
"""The known scopes."""
ENV_VAR = "FUNNEL_API_KEYS"


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class ApiKeys:
    """The configured keys (as digests) and their scopes; see the module docstring."""

    def __init__(self, keys: dict[str, list[str]] | None = None, source: str = ENV_VAR) -> None:
        self._keys: list[tuple[bytes, frozenset[str]]] = []
        for key, scopes in (keys or {}).items():
            if not isinstance(key, str) or not key or not isinstance(scopes, list):
                raise ConfigError(f'{source}: expected {{"<key>": ["read", ...]}}')
            for scope in scopes:
                if scope not in SCOPES:
                    raise ConfigError(f"{source}: unknown scope {scope!r}; known: {', '.join(SCOPES)}")
            self._keys.append((_digest(key), frozenset(scopes)))

    @property
    def open(self) -> bool:
        """True when no key is configured: every request gets every scope."""
        return not self._keys

    @classmethod
    def from_json(cls, text: str, source: str = ENV_VAR) -> ApiKeys:
        """Keys from a JSON object ``{"<key>": [scopes]}``."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source}: not valid JSON ({exc.msg} at character {exc.pos})") from None
        if not isinstance(data, dict):
            raise ConfigError(f'{source}: expected a JSON object {{"<key>": ["read", ...]}}')
        return cls(data, source)

    @classmethod
    def load(cls, path: str | Path | None = None) -> ApiKeys:
        """Keys from ``path`` when given, else from ``$FUNNEL_API_KEYS``, else none (open)."""
        if path is not None:
            try:
                return cls.from_json(Path(path).read_text(), source=str(path))
            except OSError as exc:
                raise ConfigError(f"cannot read the API keys file {path}: {exc.strerror}") from None
        text = os.environ.get(ENV_VAR, "").strip()
        return cls.from_json(text) if text else cls()

    def scopes_of(self, key: str) -> frozenset[str] | None:
        """The scopes of ``key``, or None when it is not a configured key (constant-time compare)."""
        digest = _digest(key)
        found = None
        for known, scopes in self._keys:
            if hmac.compare_digest(known, digest):
                found = scopes
        return found


def grants(scopes: frozenset[str], needed: str) -> bool:
    """Whether ``scopes`` allow ``needed`` (``admin`` allows everything)."""
    return needed in scopes or "admin" in scopes
