"""The ``OnlineStore`` protocol: batched reads, idempotent atomic increments, overwrites, TTL.

An online store holds one *hash* per key (field -> number). Keys are built by
:func:`feature_key` and carry the key-format version, so a layout change never reads old data
as new. Streaming updates go through :meth:`OnlineStore.apply`, which is atomic and idempotent per
event: an event whose id was already applied changes nothing, so a consumer that crashes between
applying and committing its offset cannot double count when it replays.

Every backend passes one contract suite (``tests/contract/test_online_store_contract.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

KEY_FORMAT_VERSION = 1
"""Version of the key layout; part of every key."""


def feature_key(entity: str, entity_id: str, group: str) -> str:
    """The key of one entity's feature group, e.g. ``fs1:user:42:activity``.

    Example:
        >>> feature_key("user", "42", "activity")
        'fs1:user:42:activity'
    """
    return f"fs{KEY_FORMAT_VERSION}:{entity}:{entity_id}:{group}"


@dataclass(frozen=True, slots=True)
class Increment:
    """Add ``amount`` to ``field`` of hash ``key``; the key expires ``ttl_s`` after its last write."""

    key: str
    field: str
    amount: float
    ttl_s: int | None = None


@runtime_checkable
class OnlineStore(Protocol):
    """Data plane of an online feature store (control plane: ``create``/``teardown`` per backend)."""

    def get_many(self, keys: Sequence[str]) -> list[dict[str, float]]:
        """The hash of every key, in order (an empty dict for a missing or expired key)."""
        ...

    def set_many(self, rows: Mapping[str, Mapping[str, float]], ttl_s: int | None = None) -> None:
        """Replace the hashes of ``rows`` (materialisation, backfill)."""
        ...

    def apply(self, batch: Sequence[tuple[str, Sequence[Increment]]], dedup_ttl_s: int) -> int:
        """Apply ``(event_id, increments)`` pairs atomically per event; return how many applied.

        An event id already applied within ``dedup_ttl_s`` seconds is skipped (idempotence).
        """
        ...

    def close(self) -> None:
        """Release connections."""
        ...
