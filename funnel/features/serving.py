"""Online feature vectors for one user and N candidate items, plus the served-feature sample log.

:class:`FeatureServer` reads every hash it needs in ONE ``store.get_many`` call (the user's
``act``/``life``/``cat``/``creator``/``items``/``recent`` hashes and each item's ``stats`` hash,
plus ``meta`` unless a :class:`~funnel.features.streaming.Catalog` is given), sums the buckets
inside each window at ``t`` (:mod:`funnel.features.windows`) and derives the values with the
same :func:`~funnel.features.vectors.compute` as the offline path. Item bucket fields are
looked up by name (in-window fields only), closed buckets' sums cached per item until the next
bucket boundary (see :class:`FeatureServer`), and summed per window with one matmul. A store
declaring the :data:`~funnel.features.online.protocol.FAST_PATH` capability serves the item
bucket fields as one matrix (``read_fields``: no hash copies, no per-field Python lookups).

:class:`ServedFeatureLog` appends a deterministic sample of served vectors (by a hash of the
request id, so a request is either always or never sampled) as JSON lines to
``<folder>/served-YYYY-MM-DD.jsonl`` with the request id and the feature version, for skew
monitoring against :meth:`~funnel.features.offline.OfflineStore.get_historical_features`.

Example:
    >>> class Empty:  # an empty store
    ...     def get_many(self, keys): return [{} for _ in keys]
    >>> fv = FeatureServer(Empty()).read("u1", ["i1", "i2"], t=1_767_225_600_000)
    >>> fv.user["user_click_count_1h"], fv.items["item_ctr_24h"].tolist(), fv.user["user_recent_items"]
    (0, [0.0, 0.0], [])
"""

from __future__ import annotations

import json
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path

import numpy as np

from funnel.features.definitions import FEATURE_VERSION, FEATURES, FeatureDef, item_columns
from funnel.features.online.protocol import FAST_PATH, OnlineStore, capabilities, feature_key
from funnel.features.streaming import Catalog, read_recent
from funnel.features.vectors import ItemMeta, compute
from funnel.features.windows import WINDOWS, window_sums

_ITEM = feature_key("item", "", "")[:-1]  # "fs1:item:": item keys are built inline
assert feature_key("item", "i", "g") == f"{_ITEM}i:g"
USER_GROUPS = ("act", "life", "cat", "creator", "items")
"""The user's counter hashes read per request (plus ``recent``)."""


@dataclass
class FeatureVectors:
    """Features served at ``t``: user-level values and one array per item-level feature."""

    user_id: str
    item_ids: list[str]
    t: int
    user: dict[str, object]
    items: dict[str, np.ndarray]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (arrays become lists)."""
        return {
            "user_id": self.user_id,
            "item_ids": self.item_ids,
            "t": self.t,
            "user": self.user,
            "items": {k: v.tolist() for k, v in self.items.items()},
        }


@dataclass
class _Layout:
    """The item fields of one epoch (bucket starts at ``t``): open and closed, and the cache."""

    epoch: tuple[int, ...]
    open_names: list[str]
    open_proj: np.ndarray
    closed_names: list[str]
    closed_proj: np.ndarray
    closed: dict[str, int]
    rows: np.ndarray


class FeatureServer:
    """Reads feature vectors from an online store with the shared definitions.

    ``cache_closed`` (default on) caches the items' sums over *closed* buckets until ``t`` enters
    a new bucket; an event that arrives after its bucket closed (a late event) then shows in item
    features only from the next bucket boundary (at most 10 minutes later). Off: every read looks
    every in-window bucket up (exact for late events too, slower).
    """

    def __init__(
        self,
        store: OnlineStore,
        catalog: Catalog | None = None,
        defs: Sequence[FeatureDef] = FEATURES,
        served_log: ServedFeatureLog | None = None,
        cache_closed: bool = True,
    ) -> None:
        self.store, self.catalog, self.defs, self.served_log = store, catalog, tuple(defs), served_log
        self.cache_closed = cache_closed
        self._fast = FAST_PATH in capabilities(store)
        self._cols = item_columns(self.defs)
        self._current: _Layout | None = None

    def _layout(self, t: int) -> _Layout:
        """Field names and projections of the window at ``t``; a new one (empty cache) per epoch."""
        epoch = tuple(WINDOWS[w].bucket_start(t) for _, _, w in self._cols)
        layout = self._current
        if layout is not None and layout.epoch == epoch:
            return layout
        names: dict[str, tuple[bool, int]] = {}
        pairs: list[tuple[bool, int, int]] = []
        for j, (_group, counter, window) in enumerate(self._cols):
            w = WINDOWS[window]
            current = w.bucket_start(t)
            for b in w.buckets(t):
                is_open = b == current or not self.cache_closed
                slot = names.setdefault(
                    f"{counter}||{w.res}:{b}", (is_open, sum(o == is_open for o, _ in names.values()))
                )
                pairs.append((is_open, slot[1], j))
        open_names = [f for f, (o, _) in names.items() if o]
        closed_names = [f for f, (o, _) in names.items() if not o]
        proj = {
            True: np.zeros((len(open_names), len(self._cols))),
            False: np.zeros((len(closed_names), len(self._cols))),
        }
        for is_open, i, j in pairs:
            proj[is_open][i, j] = 1.0
        empty = np.zeros((0, len(self._cols)))
        self._current = _Layout(epoch, open_names, proj[True], closed_names, proj[False], {}, empty)
        return self._current

    def _fields(self, keys: list[str], hashes: list[dict[str, float]] | None, names: list[str]) -> np.ndarray:
        """``(len(keys), len(names))`` bucket values: from the store's fast path or the hashes."""
        if hashes is None:
            return self.store.read_fields(keys, names)  # type: ignore[attr-defined]
        flat: list[float] = []
        zero = repeat(0.0)
        for h in hashes:
            flat.extend(map(h.get, names, zero))
        return np.asarray(flat, dtype=np.float64).reshape(len(keys), len(names))

    def _item_matrix(
        self, item_ids: list[str], keys: list[str], hashes: list[dict[str, float]] | None, t: int
    ) -> np.ndarray:
        """Window sums of every item column: in-window fields looked up by name, summed by matmul.

        Closed buckets (every in-window bucket but the current one of each resolution) no longer
        change, so their per-item sums are cached until ``t`` enters a new bucket; only the open
        buckets are looked up on every read. The cost never depends on stale buckets in a hash.
        ``hashes`` None: read the fields with the store's ``read_fields``.
        """
        lay, n = self._layout(t), len(keys)
        out = self._fields(keys, hashes, lay.open_names) @ lay.open_proj
        if not lay.closed_names:
            return out
        if len(lay.closed) > 500_000:
            lay.closed.clear()
        idx = np.fromiter(map(lay.closed.get, item_ids, repeat(-1)), np.intp, n)
        if idx.size and idx.min() < 0:
            at = np.flatnonzero(idx < 0).tolist()
            miss = list({item_ids[k]: k for k in reversed(at)}.values())  # first position per item
            sub = None if hashes is None else [hashes[k] for k in miss]
            rows = self._fields([keys[k] for k in miss], sub, lay.closed_names) @ lay.closed_proj
            start = len(lay.closed)
            if start + len(miss) > len(lay.rows):  # grow the row store (amortised doubling)
                grown = np.zeros((max(2 * len(lay.rows), start + len(miss), 1024), len(self._cols)))
                grown[:start] = lay.rows[:start]
                lay.rows = grown
            lay.rows[start : start + len(miss)] = rows
            for j, k in enumerate(miss):
                lay.closed[item_ids[k]] = start + j
            idx[at] = [lay.closed[item_ids[k]] for k in at]
        return out + lay.rows[idx]

    def read(
        self, user_id: str, item_ids: Sequence[str], t: int | None = None, request_id: str | None = None
    ) -> FeatureVectors:
        """Feature vectors of ``user_id`` and ``item_ids`` at ``t`` (epoch ms; default now)."""
        t = int(time.time() * 1000) if t is None else int(t)
        item_ids = list(item_ids)
        n = len(item_ids)
        keys = [feature_key("user", user_id, g) for g in (*USER_GROUPS, "recent")]
        stats = [f"{_ITEM}{i}:stats" for i in item_ids]
        if self.catalog is None:
            keys += [f"{_ITEM}{i}:meta" for i in item_ids]
        if not self._fast:
            keys[len(USER_GROUPS) + 1 : len(USER_GROUPS) + 1] = stats
        hashes = self.store.get_many(keys)
        k = len(USER_GROUPS)
        user_sums = window_sums(dict(zip(USER_GROUPS, hashes[:k], strict=True)), t)
        recent = read_recent(hashes[k])
        item_hashes = None if self._fast else hashes[k + 1 : k + 1 + n]
        matrix = self._item_matrix(item_ids, stats, item_hashes, t)
        meta = self._meta(item_ids, hashes[k + 1 + (0 if self._fast else n) :])
        user, items = compute(t, user_sums, recent, item_ids, matrix, meta, self.defs)
        fv = FeatureVectors(user_id, item_ids, t, user, items)
        if self.served_log is not None and request_id is not None:
            self.served_log.maybe_log(request_id, fv)
        return fv

    def _meta(self, item_ids: list[str], hashes: list[dict[str, float]]) -> ItemMeta:
        if self.catalog is not None:
            return self.catalog.item_meta(item_ids)
        pub_at, cats, creators = [], [], []
        for h in hashes:
            pub_at.append(h.get("published_at", np.nan))
            cats.append(tuple(f[4:] for f in h if f.startswith("cat|")))
            creators.append(next((f[8:] for f in h if f.startswith("creator|")), None))
        return ItemMeta.from_lists(np.array(pub_at, dtype=np.float64), cats, creators)


class ServedFeatureLog:
    """A JSON-lines log of a ``sample_rate`` fraction of served feature vectors (by request id)."""

    def __init__(self, folder: str | Path, sample_rate: float = 0.01) -> None:
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError("sample_rate must be in [0, 1]")
        self.folder, self.sample_rate = Path(folder), sample_rate
        self.folder.mkdir(parents=True, exist_ok=True)
        self.logged = 0

    def sampled(self, request_id: str) -> bool:
        """Whether ``request_id`` falls in the sample (the same answer every time)."""
        return zlib.crc32(request_id.encode()) < self.sample_rate * 2**32

    def maybe_log(self, request_id: str, fv: FeatureVectors) -> bool:
        """Append ``fv`` if ``request_id`` is sampled; return whether it was."""
        if not self.sampled(request_id):
            return False
        day = time.strftime("%Y-%m-%d", time.gmtime(fv.t / 1000))
        line = {"request_id": request_id, "feature_version": FEATURE_VERSION, **fv.to_dict()}
        with open(self.folder / f"served-{day}.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(line, separators=(",", ":")) + "\n")
        self.logged += 1
        return True

    def read(self) -> list[dict]:
        """Every logged line, oldest file first."""
        out = []
        for path in sorted(self.folder.glob("served-*.jsonl")):
            out.extend(json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x)
        return out
