"""What the quality monitors read: served slots and clicks as arrays, and the catalogue beside them.

An :class:`EventFrame` flattens the impressions of a stretch of the event log into one row per
*slot* (an item shown on a page), sorted by time, and marks each slot clicked when a ``click``
interaction carries the page's ``request_id`` and the slot's item (the join the API's
``POST /v1/interactions`` with ``request_id`` makes possible). Clicks that match no logged slot
(no request id, or an impression that was never logged) are counted as *unattributed*: a CTR
computed while most clicks are unattributed says more about the instrumentation than the model.

A :class:`Catalogue` holds what the monitors need per item: listed or not, categories, and
publication time; :meth:`Catalogue.from_items` reads the canonical ``ITEMS`` table (the lake).

Example:
    >>> from funnel.core.schema import Impression, Interaction
    >>> t = 1_700_000_000_000
    >>> frame = EventFrame.from_events([
    ...     Impression("r1", "u1", ("a", "b"), (0, 1), t, sources=("trending", "als")),
    ...     Interaction("u1", "b", "click", t + 5, request_id="r1"),
    ...     Interaction("u1", "c", "click", t + 9),          # no request id: unattributed
    ... ])
    >>> [frame.items[i] for i in frame.slot_item], frame.slot_clicked.tolist(), frame.unattributed_clicks
    (['a', 'b'], [False, True], 1)
    >>> [frame.sources[s] for s in frame.slot_source]
    ['trending', 'als']
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from funnel.core.schema import Impression, Interaction
from funnel.events.protocol import Event, LogRecord

if TYPE_CHECKING:
    from funnel.data.lake import Lake

CLICK = "click"
"""The interaction type that counts as a click of a served slot."""
UNKNOWN_SOURCE = "unknown"
"""Source label of slots whose impression carried no ``sources``."""


@dataclass
class EventFrame:
    """Served slots (sorted by time) and their clicks; see the module docstring.

    ``slot_list`` numbers the pages (one impression each, consecutive within a page);
    ``slot_item`` and ``slot_source`` are codes into ``items`` and ``sources``.
    """

    items: list[str]
    sources: list[str]
    slot_ts: np.ndarray
    slot_list: np.ndarray
    slot_item: np.ndarray
    slot_source: np.ndarray
    slot_clicked: np.ndarray
    unattributed_clicks: int
    click_ts: np.ndarray
    """Times of every click (attributed or not)."""

    @classmethod
    def from_events(cls, events: Iterable[LogRecord | Event]) -> EventFrame:
        """Flatten the impressions and clicks among ``events`` (log records or bare events)."""
        item_code: dict[str, int] = {}
        source_code: dict[str, int] = {UNKNOWN_SOURCE: 0}
        ts: list[int] = []
        lists: list[int] = []
        codes: list[int] = []
        srcs: list[int] = []
        keys: list[tuple[str, str]] = []
        clicks: list[tuple[str | None, str]] = []
        click_ts: list[int] = []
        n_lists = 0
        for rec in events:
            ev = rec.event if isinstance(rec, LogRecord) else rec
            if type(ev) is Impression:
                n = len(ev.item_ids)
                ts += [ev.timestamp] * n
                lists += [n_lists] * n
                n_lists += 1
                codes += [item_code.setdefault(i, len(item_code)) for i in ev.item_ids]
                names = getattr(ev, "sources", None) or (UNKNOWN_SOURCE,) * n
                srcs += [source_code.setdefault(s, len(source_code)) for s in names]
                keys += [(ev.request_id, i) for i in ev.item_ids]
            elif type(ev) is Interaction and ev.type == CLICK:
                clicks.append((ev.request_id, ev.item_id))
                click_ts.append(ev.timestamp)
        clicked_keys = set(clicks)
        clicked = np.fromiter((k in clicked_keys for k in keys), dtype=bool, count=len(keys))
        served = set(keys)
        unattributed = sum(1 for c in clicks if c not in served)
        order = np.argsort(np.asarray(ts, dtype=np.int64), kind="stable")  # pages stay contiguous
        return cls(
            items=list(item_code),
            sources=list(source_code),
            slot_ts=np.asarray(ts, dtype=np.int64)[order],
            slot_list=np.asarray(lists, dtype=np.int64)[order],
            slot_item=np.asarray(codes, dtype=np.int64)[order],
            slot_source=np.asarray(srcs, dtype=np.int64)[order],
            slot_clicked=clicked[order],
            unattributed_clicks=unattributed,
            click_ts=np.sort(np.asarray(click_ts, dtype=np.int64)),
        )

    def __len__(self) -> int:
        return len(self.slot_ts)

    def span(self, start_ms: int, end_ms: int) -> slice:
        """The slots served in ``[start_ms, end_ms)`` (a slice of the slot arrays)."""
        lo, hi = np.searchsorted(self.slot_ts, [start_ms, end_ms], side="left")
        return slice(int(lo), int(hi))

    def time_range(self) -> tuple[int, int] | None:
        """First and last slot time, or None without slots."""
        return (int(self.slot_ts[0]), int(self.slot_ts[-1])) if len(self.slot_ts) else None


@dataclass
class Catalogue:
    """Per item: id, listed flag, categories (tuple) and ``published_at`` (epoch ms, NaN unknown)."""

    item_ids: list[str]
    listed: np.ndarray
    categories: list[tuple[str, ...]]
    published_at: np.ndarray
    _index: dict[str, int] | None = field(default=None, init=False, repr=False, compare=False)

    COLUMNS = ("item_id", "status", "categories", "published_at")
    """The ``ITEMS`` columns :meth:`from_items` reads (a lake read need decode no more)."""

    @classmethod
    def from_lake(cls, lake: Lake) -> Catalogue:
        """The lake's current catalogue, decoding only :attr:`COLUMNS` of it."""
        return cls.from_items(lake.read("items", list(cls.COLUMNS)))

    @classmethod
    def from_items(cls, table: pa.Table) -> Catalogue:
        """From a canonical ``ITEMS`` table (``status == "unlisted"`` is unlisted, null is listed)."""
        ids = table.column("item_id").to_pylist()
        status = pc.fill_null(table.column("status"), "listed")
        listed = np.asarray(pc.not_equal(status, "unlisted").to_numpy(zero_copy_only=False), dtype=bool)
        cats = [tuple(c or ()) for c in table.column("categories").to_pylist()]
        pub = table.column("published_at").cast(pa.int64()).to_numpy(zero_copy_only=False)  # nulls: NaN
        return cls(ids, listed.reshape(len(ids)), cats, np.asarray(pub, dtype=np.float64))

    @property
    def n_listed(self) -> int:
        """Number of listed items."""
        return int(self.listed.sum())

    def align(self, item_ids: list[str]) -> np.ndarray:
        """The catalogue row of each of ``item_ids`` (-1 when not in the catalogue).

        The id index is built on the first call and kept (0.3 s at 1M items: the ``/metrics``
        quality gauges align on every refresh); ``item_ids`` must not change afterwards.
        """
        if self._index is None:
            self._index = {k: i for i, k in enumerate(self.item_ids)}
        get = self._index.get
        return np.fromiter((get(k, -1) for k in item_ids), dtype=np.int64, count=len(item_ids))
