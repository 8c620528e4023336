"""A synthetic dataset as the event stream the write path would have seen, in time order.

Interactions and impressions become :class:`~funnel.core.schema.Interaction` and
:class:`~funnel.core.schema.Impression` events sorted by timestamp — what replay tests, streaming
benchmarks and simulations feed to an event log.

Example:
    >>> from funnel.data.synthetic import SyntheticConfig, generate
    >>> ds = generate(SyntheticConfig(n_users=30, n_items=40, n_interactions=300, seed=0))
    >>> events = event_stream(ds, limit=50)
    >>> len(events), all(a.timestamp <= b.timestamp for a, b in zip(events, events[1:]))
    (50, True)
"""

from __future__ import annotations

import pyarrow as pa

from funnel.core.schema import Impression, Interaction
from funnel.data.synthetic.dataset import SyntheticDataset


def event_stream(ds: SyntheticDataset, limit: int | None = None) -> list[Interaction | Impression]:
    """Every interaction and impression of ``ds`` as events, oldest first (the first ``limit``)."""
    inter = ds.interactions.to_pydict()
    ts = ds.interactions.column("timestamp").cast(pa.int64()).to_pylist()
    events: list[Interaction | Impression] = [
        Interaction(u, i, ty, t, v, e)
        for u, i, ty, t, v, e in zip(
            inter["user_id"],
            inter["item_id"],
            inter["type"],
            ts,
            inter["value"],
            inter["event_id"],
            strict=True,
        )
    ]
    imp = ds.impressions.to_pydict()
    its = ds.impressions.column("timestamp").cast(pa.int64()).to_pylist()
    events += [
        Impression(r, u, tuple(items), tuple(pos), t)
        for r, u, items, pos, t in zip(
            imp["request_id"], imp["user_id"], imp["item_ids"], imp["positions"], its, strict=True
        )
    ]
    events.sort(key=lambda e: e.timestamp)
    return events if limit is None else events[:limit]
