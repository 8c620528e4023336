"""A batch of events as per-key field sums: the streaming fast path (``OnlineStore`` ``apply_sums``).

:func:`batch_sums` produces exactly the increments of
:meth:`~funnel.features.streaming.EventFeaturizer.increments` for every event of a batch, but
merged per hash key: count increments (amount 1.0: ``n.*`` counters and ``recent`` fields) are
summed per field — integer sums in float64 are exact, so ``x + (1 + 1)`` equals
``(x + 1) + 1`` for the integer counts these fields hold; value increments (``v.*`` counters,
e.g. a rating or a watch ratio) are NOT summed: they stay separate entries in event order, so a
store adds them one by one exactly as ``apply`` would. Each key carries its TTL (its group's;
an item bucket key's: its resolution's, :func:`~funnel.features.streaming.bucket_ttls`).

The store applies the sums only when every event of the batch is new (see ``apply_sums``);
otherwise the caller falls back to the per-event ``apply``, which skips the events already seen.

Example:
    >>> from funnel.core.schema import Interaction
    >>> from funnel.features.streaming import EventFeaturizer
    >>> fz = EventFeaturizer()
    >>> clicks = [Interaction("u1", "i1", "click", 1_767_225_600_000 + k) for k in range(3)]
    >>> sums = batch_sums(fz, clicks)
    >>> ttl, fields, amounts = sums["fs2:user:u1:act"]
    >>> dict(zip(fields, amounts))["n.click||10m:1767225600000"]
    3.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from funnel.core.schema import Impression, Interaction
from funnel.features.online.protocol import KeySums, bucket_key, feature_key
from funnel.features.windows import WINDOWS

if TYPE_CHECKING:
    from funnel.features.streaming import EventFeaturizer

_PREFIX = feature_key("", "", "")[:-2]  # "fs2:"
assert feature_key("user", "u", "g") == f"{_PREFIX}user:u:g"
assert bucket_key("g", "n.x|1d:0") == f"{_PREFIX}bucket:n.x|1d:0:g"
_RES = {w.res: w for w in WINDOWS.values()}


def batch_sums(featurizer: EventFeaturizer, events: Sequence[Interaction | Impression]) -> KeySums | None:
    """The increments of ``events`` merged per key (see the module docstring).

    Returns None when an event carries a value the per-event path must judge (not a finite
    number): the caller then uses ``apply``, which rejects the batch as before.
    """
    counts: dict[str, dict[str, float]] = {}
    values: dict[str, list[tuple[str, float]]] = {}
    ttls: dict[str, int | None] = {}  # a key's TTL is its group's: the same for all its increments
    by_type, cat = featurizer._by_type, featurizer.catalog
    recent_types, categories, creators = featurizer._recent_types, cat.categories, cat.creators
    imp = [(f"{_PREFIX}bucket:{c}|{w.res}:", f":{g}", w.bucket_ms, ttl) for c, parts in featurizer._imp
           for g, w, ttl in parts]  # fmt: skip

    for event in events:
        ts = event.timestamp
        if type(event) is Impression:
            for head, tail, b, ttl in imp:  # the bucket key of each impression counter, field = item
                key = f"{head}{b and ts // b * b}{tail}"
                h = counts.get(key)
                if h is None:
                    h = counts[key] = {}
                    ttls[key] = ttl
                for item in event.item_ids:
                    h[item] = h.get(item, 0.0) + 1.0
            continue
        user, item = event.user_id, event.item_id
        starts = {r: f"|{r}:{w.bucket_ms and ts // w.bucket_ms * w.bucket_ms}" for r, w in _RES.items()}
        for entity, counter, parts in by_type.get(event.type, ()):
            valued = counter[0] == "v"
            if valued:
                amount = event.value
                if amount is None:
                    continue
                if type(amount) is not float and (isinstance(amount, bool) or not isinstance(amount, int)):
                    return None  # not a plain number: let apply judge it
                if not math.isfinite(amount):
                    return None
            if entity == "user" or entity == "item":
                subs: Sequence[str] = ("",)
            elif entity == "user_item":
                subs = (item,)
            elif entity == "user_category":
                subs = categories.get(item, ())
            else:
                creator = creators.get(item)
                subs = (creator,) if creator else ()
            if not subs:
                continue
            prefix = f"{_PREFIX}user:{user}:"
            for group, w, ttl in parts:
                key, suffix = prefix + group, starts[w.res]
                if entity == "item":  # the bucket's key, the item's field
                    key = f"{_PREFIX}bucket:{counter}{suffix}:{group}"
                h = counts.get(key)
                if h is None:
                    h = counts[key] = {}
                    ttls[key] = ttl
                for sub in subs:
                    field = item if entity == "item" else f"{counter}|{sub}{suffix}"
                    if valued:
                        values.setdefault(key, []).append((field, amount))
                    else:
                        h[field] = h.get(field, 0.0) + 1.0
        if event.type in recent_types:
            key = f"{_PREFIX}user:{user}:recent"
            h = counts.get(key)
            if h is None:
                h = counts[key] = {}
                ttls[key] = None
            field = f"{item}|{ts}"
            h[field] = h.get(field, 0.0) + 1.0
    out: KeySums = {}
    for key, h in counts.items():
        fields, amounts = list(h), list(h.values())
        for field, amount in values.get(key, ()):
            fields.append(field)
            amounts.append(amount)
        out[key] = (ttls[key], fields, amounts)
    return out
