"""The ``OnlineStore`` protocol: batched reads, idempotent atomic increments, overwrites, TTL.

An online store holds one *hash* per key (field -> number). Keys are built by
:func:`feature_key` and carry the key-format version, so a layout change never reads old data
as new. Streaming updates go through :meth:`OnlineStore.apply`, which is atomic and idempotent per
event: an event whose id was already applied changes nothing, so a consumer that crashes between
applying and committing its offset cannot double count when it replays.

Every backend passes one contract suite (``tests/contract/test_online_store_contract.py``).

Optional capability :data:`FAST_PATH` (declared by a backend in its ``capabilities`` attribute,
never guessed from its methods; both built-in backends declare it): :meth:`FastPathStore.read_fields`
(named fields of many hashes as one float64 matrix, no hash copies), :meth:`FastPathStore.read_many`
(``get_many`` and ``read_fields`` together, one round trip) and
:meth:`FastPathStore.apply_sums` (a whole batch of all-new events as per-key field sums, one
atomic call; returns None, changing nothing, when an event id was already applied).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

KEY_FORMAT_VERSION = 2
"""Version of the key layout; part of every key."""


def feature_key(entity: str, entity_id: str, group: str) -> str:
    """The key of one entity's feature group, e.g. ``fs2:user:42:activity``.

    Example:
        >>> feature_key("user", "42", "activity")
        'fs2:user:42:activity'
    """
    return f"fs{KEY_FORMAT_VERSION}:{entity}:{entity_id}:{group}"


def bucket_key(group: str, bucket: str) -> str:
    """The key of one time bucket of an item counter: one hash for all items, field = item id.

    ``bucket`` is ``"<counter>|<res>:<bucket_start>"`` (see :mod:`funnel.features.windows`), so
    the open buckets of 1000 candidates are a few hashes read with one ``HMGET`` each.

    Example:
        >>> bucket_key("stats", "n.imp|3h:1767225600000")
        'fs2:bucket:n.imp|3h:1767225600000:stats'
    """
    return feature_key("bucket", bucket, group)


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


FAST_PATH = "fast_path"
"""Capability name of :class:`FastPathStore` (``read_fields``, ``read_many``, ``apply_sums``)."""

KeySums = dict[str, tuple[int | None, list[str], list[float]]]
"""``key -> (ttl_s or None, fields, amounts)``: add ``amounts[j]`` to ``fields[j]`` in order (a
field may repeat); then, when ``ttl_s`` is set, the key expires ``ttl_s`` seconds later."""


def capabilities(store: object) -> frozenset[str]:
    """The optional capabilities ``store`` declares (its ``capabilities`` attribute; none if absent)."""
    return frozenset(getattr(store, "capabilities", ()))


class FastPathStore(OnlineStore, Protocol):
    """An :class:`OnlineStore` declaring :data:`FAST_PATH` in its ``capabilities``."""

    capabilities: frozenset[str]

    def read_fields(self, keys: Sequence[str], fields: Sequence[str]) -> np.ndarray:
        """``out[i, j]`` = field ``fields[j]`` of hash ``keys[i]`` (0.0 when missing or expired)."""
        ...

    def read_many(
        self, keys: Sequence[str], field_keys: Sequence[str], fields: Sequence[str]
    ) -> tuple[list[dict[str, float]], np.ndarray]:
        """``(get_many(keys), read_fields(field_keys, fields))`` in one call (one round trip)."""
        ...

    def apply_sums(self, event_ids: Sequence[str], sums: KeySums, dedup_ttl_s: int) -> int | None:
        """Apply ``sums`` as the increments of ``event_ids``, atomically, if every id is new.

        Returns ``len(event_ids)``; or None, changing nothing, when an id repeats or was
        applied within ``dedup_ttl_s`` (the caller then falls back to :meth:`OnlineStore.apply`).
        The result equals ``apply`` of the events whose increments summed to ``sums``.
        """
        ...
