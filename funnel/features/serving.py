"""Online feature vectors for one user and N candidate items, plus the served-feature sample log.

:class:`FeatureServer` reads every hash it needs in ONE ``store.get_many`` call (the user's
``act``/``life``/``cat``/``creator``/``items``/``recent`` hashes and each item's ``stats`` hash,
plus ``meta`` unless a :class:`~funnel.features.streaming.Catalog` is given), sums the buckets
inside each window at ``t`` (:mod:`funnel.features.windows`) and derives the values with the
same :func:`~funnel.features.definitions.compute` as the offline path. The item hashes are
gathered by name (the in-window fields only) and summed per window with one matmul.

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

from funnel.features.definitions import FEATURE_VERSION, FEATURES, FeatureDef, ItemMeta, compute, item_columns
from funnel.features.online.protocol import OnlineStore, feature_key
from funnel.features.streaming import Catalog, read_recent
from funnel.features.windows import WINDOWS, window_sums

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


class FeatureServer:
    """Reads feature vectors from an online store with the shared definitions."""

    def __init__(
        self,
        store: OnlineStore,
        catalog: Catalog | None = None,
        defs: Sequence[FeatureDef] = FEATURES,
        served_log: ServedFeatureLog | None = None,
    ) -> None:
        self.store, self.catalog, self.defs, self.served_log = store, catalog, tuple(defs), served_log
        self._cols = item_columns(self.defs)

    def _item_fields(self, t: int) -> tuple[list[str], np.ndarray]:
        """The in-window bucket fields at ``t`` and the 0/1 (field x column) window matrix."""
        index: dict[str, int] = {}
        pairs = []
        for j, (_group, counter, window) in enumerate(self._cols):
            w = WINDOWS[window]
            for b in w.buckets(t):
                pairs.append((index.setdefault(f"{counter}||{w.res}:{b}", len(index)), j))
        proj = np.zeros((len(index), len(self._cols)))
        for i, j in pairs:
            proj[i, j] = 1.0
        return list(index), proj

    def _item_matrix(self, hashes: list[dict[str, float]], t: int) -> np.ndarray:
        """Window sums of every item column: look up the in-window fields by name, then one matmul.

        The cost is bounded by the window fields, whatever stale buckets a hash still holds.
        """
        names, proj = self._item_fields(t)
        flat: list[float] = []
        zero = repeat(0.0)
        for h in hashes:
            flat.extend(map(h.get, names, zero))
        return np.asarray(flat, dtype=np.float64).reshape(len(hashes), len(names)) @ proj

    def read(
        self, user_id: str, item_ids: Sequence[str], t: int | None = None, request_id: str | None = None
    ) -> FeatureVectors:
        """Feature vectors of ``user_id`` and ``item_ids`` at ``t`` (epoch ms; default now)."""
        t = int(time.time() * 1000) if t is None else int(t)
        item_ids = list(item_ids)
        n = len(item_ids)
        keys = [feature_key("user", user_id, g) for g in (*USER_GROUPS, "recent")]
        keys += [feature_key("item", i, "stats") for i in item_ids]
        if self.catalog is None:
            keys += [feature_key("item", i, "meta") for i in item_ids]
        hashes = self.store.get_many(keys)
        k = len(USER_GROUPS)
        user_sums = window_sums(dict(zip(USER_GROUPS, hashes[:k], strict=True)), t)
        recent = read_recent(hashes[k])
        matrix = self._item_matrix(hashes[k + 1 : k + 1 + n], t)
        meta = self._meta(item_ids, hashes[k + 1 + n :])
        user, items = compute(t, user_sums, recent, item_ids, matrix, meta, self.defs)
        fv = FeatureVectors(user_id, item_ids, t, user, items)
        if self.served_log is not None and request_id is not None:
            self.served_log.maybe_log(request_id, fv)
        return fv

    def _meta(self, item_ids: list[str], hashes: list[dict[str, float]]) -> ItemMeta:
        if self.catalog is not None:
            c = self.catalog
            pub = [c.published_at.get(i) for i in item_ids]
            return ItemMeta(
                np.array([np.nan if p is None else p for p in pub], dtype=np.float64),
                [c.categories.get(i, ()) for i in item_ids],
                [c.creators.get(i) for i in item_ids],
            )
        pub_at, cats, creators = [], [], []
        for h in hashes:
            pub_at.append(h.get("published_at", np.nan))
            cats.append(tuple(f[4:] for f in h if f.startswith("cat|")))
            creators.append(next((f[8:] for f in h if f.startswith("creator|")), None))
        return ItemMeta(np.array(pub_at, dtype=np.float64), cats, creators)


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
