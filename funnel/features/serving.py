"""Online feature vectors for one user and N candidate items, plus the served-feature sample log.

:class:`FeatureServer` reads the user's ``act``/``life``/``cat``/``creator``/``items``/``recent``
hashes (plus the candidates' ``meta`` unless a :class:`~funnel.features.catalog.Catalog` is
given) in one ``store.get_many`` call, sums their buckets inside each window at ``t``
(:mod:`funnel.features.windows`) and derives the values with the same
:func:`~funnel.features.vectors.compute` as the offline path. Item counters live in one hash per
bucket (:func:`~funnel.features.online.protocol.bucket_key`, field = item id), so the
candidates' counts are a few keys read for all items at once: a store declaring the
:data:`~funnel.features.online.protocol.FAST_PATH` capability answers them as one matrix
(``read_fields``), others through ``get_many``. Only the finest open bucket of each item counter
is read per request; closed buckets' sums are cached per item until the next bucket boundary
(see :class:`FeatureServer`), and everything is summed per window with one matmul.

:class:`ServedFeatureLog` appends a deterministic sample of served vectors (by a hash of the
request id, so a request is either always or never sampled) as JSON lines to
``<folder>/served-YYYY-MM-DD.jsonl`` (the day of ``t``) with the request id and the feature
version, for skew monitoring against
:meth:`~funnel.features.offline.OfflineStore.get_historical_features` (:mod:`funnel.monitoring.skew`
reads ``<data_dir>/served_features/``: :data:`SERVED_DIR`). A request not sampled costs one CRC32
of its id. On the serving path the log runs with ``background=True``: a sampled vector is queued
(a reference: the arrays are fresh per read and never changed afterwards) and a daemon thread
serialises and appends the queue every ``flush_interval_s``, one ``write`` per file and batch on
an ``O_APPEND`` descriptor (whole batches, so processes sharing the folder do not interleave
lines); at most ``max_pending_rows`` rows wait, vectors beyond are dropped and counted. Files more
than ``retain_days`` days older than the newest one written are deleted when a new day's file is
started, and a day's file stops growing at ``max_day_bytes`` (later lines of that day are dropped
and counted): the disk used stays under about ``retain_days`` x ``max_day_bytes`` (serving's log,
:class:`~funnel.engine.Engine`'s: 7 days, 1 GiB; a sampled request of a thousand candidates is
~75 kB). Both are off by default (a historical replay crosses days of data clock in minutes).

Example:
    >>> class Empty:  # an empty store
    ...     def get_many(self, keys): return [{} for _ in keys]
    >>> fv = FeatureServer(Empty()).read("u1", ["i1", "i2"], t=1_767_225_600_000)
    >>> fv.user["user_click_count_1h"], fv.items["item_ctr_24h"].tolist(), fv.user["user_recent_items"]
    (0, [0.0, 0.0], [])
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from itertools import repeat
from pathlib import Path

import numpy as np

from funnel.features.definitions import FEATURE_VERSION, FEATURES, FeatureDef, item_columns
from funnel.features.online.protocol import FAST_PATH, OnlineStore, bucket_key, capabilities, feature_key
from funnel.features.streaming import Catalog, bucket_ttls, read_recent
from funnel.features.vectors import ItemMeta, compute
from funnel.features.windows import WINDOWS, Window, window_sums

log = logging.getLogger(__name__)
SERVED_DIR = "served_features"
"""Folder of the served-feature log under a data directory (what :mod:`funnel.monitoring.skew` reads)."""
_ITEM = feature_key("item", "", "")[:-1]  # "fs2:item:": item meta keys are built inline
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
    """The item bucket keys of one epoch (bucket starts at ``t``): open and closed, and the cache."""

    epoch: tuple[int, ...]
    open_keys: list[str]
    open_proj: np.ndarray
    closed_keys: list[str]
    closed_proj: np.ndarray
    closed: dict[str, int]
    rows: np.ndarray
    bound_sums: np.ndarray | None = None  # closed sums of every bound item (row = bound index)


class FeatureServer:
    """Reads feature vectors from an online store with the shared definitions.

    ``cache_closed`` (default on) caches the items' sums over *closed* buckets until ``t`` enters
    a new bucket, and reads an open coarse bucket as the finer resolution's buckets since its
    start (the closed ones cached, so each read fetches only the finest open buckets: the
    smallest hashes); an event that arrives after its finest bucket closed (a late event) then
    shows in item features only from the next bucket boundary (at most 10 minutes later). Off:
    every read looks every in-window bucket up (exact for late events too, slower).

    :meth:`bind_items` numbers the catalogue once (a serving pipeline's item indices); a read
    given ``item_index`` then finds the candidates' catalogue rows and closed sums by position
    instead of hashing their ids, the same values at a fraction of the cost on large catalogues:
    the closed sums of every bound item are built at once when an epoch starts, in one pass over
    the closed buckets' entries (see ``_bound_closed_sums``).
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
        self._res: dict[tuple[str, str], list[Window]] = {}  # each item counter's resolutions
        for group, counter, window in self._cols:
            self._res.setdefault((group, counter), []).append(WINDOWS[window])
        self._ttls = bucket_ttls(self.defs)
        self._current: _Layout | None = None
        self.bound_items: list[str] | None = None
        """The item list :meth:`bind_items` numbered (``read``'s ``item_index`` points into it)."""
        self._bound_meta: np.ndarray | None = None
        self._bound_positions: Mapping[str, int] | None = None

    def bind_items(self, item_ids: list[str], positions: Mapping[str, int] | None = None) -> None:
        """Number ``item_ids`` for reads by position (``read(..., item_index=...)``).

        The list is kept by reference and must not change afterwards (bind a new list instead);
        the catalogue rows are looked up once here. ``positions`` (optional): ``item_ids``' own
        inverse, ``{item_ids[i]: i}``, when the caller holds one already (else built on first use).
        """
        self.bound_items = item_ids
        self._bound_positions = positions
        self._bound_meta = self.catalog.rows_of(item_ids) if self.catalog is not None else None
        self._current = None  # the cached sums' rows follow the numbering

    def _layout(self, t: int) -> _Layout:
        """Bucket keys and projections of the windows at ``t``; a new one (empty cache) per epoch."""
        epoch = tuple(WINDOWS[w].bucket_start(t) for _, _, w in self._cols)
        layout = self._current
        if layout is not None and layout.epoch == epoch:
            return layout
        keys: dict[tuple[bool, str], int] = {}  # (open, key) -> row in its projection
        pairs: list[tuple[bool, int, int]] = []
        for j, (group, counter, window) in enumerate(self._cols):
            w = WINDOWS[window]
            current = w.bucket_start(t)
            for b in w.buckets(t):
                if not self.cache_closed:
                    parts = [(True, bucket_key(group, f"{counter}|{w.res}:{b}"))]
                else:
                    parts = self._split(group, counter, w, b, t) if b == current else []
                    parts = parts or [(False, bucket_key(group, f"{counter}|{w.res}:{b}"))]
                for part in parts:
                    row = keys.setdefault(part, sum(o == part[0] for o, _ in keys))
                    pairs.append((part[0], row, j))
        open_keys = [k for o, k in keys if o]
        closed_keys = [k for o, k in keys if not o]
        proj = {
            True: np.zeros((len(open_keys), len(self._cols))),
            False: np.zeros((len(closed_keys), len(self._cols))),
        }
        for is_open, i, j in pairs:
            proj[is_open][i, j] = 1.0
        empty = np.zeros((0, len(self._cols)))
        self._current = _Layout(epoch, open_keys, proj[True], closed_keys, proj[False], {}, empty)
        return self._current

    def _split(self, group: str, counter: str, w: Window, start: int, t: int) -> list[tuple[bool, str]]:
        """The open bucket ``start`` of ``w`` as ``(open, key)`` parts: closed finer buckets + one open.

        A counter's bucket of every resolution sums the same events, so the open coarse bucket
        equals the finer resolution's buckets since ``start``: the closed ones are cached with the
        other closed buckets and only the finest open bucket (the smallest hash) is read per
        request. Without a finer resolution (or for lifetime): the bucket itself, open.
        """
        finer = [
            v for v in self._res[(group, counter)]
            if 0 < v.bucket_ms < w.bucket_ms and w.bucket_ms % v.bucket_ms == 0
            and (self._ttls[(group, v.res)] or w.bucket_ms) * 1000 >= w.bucket_ms  # they outlive it
        ]  # fmt: skip
        if not finer:
            return [(True, bucket_key(group, f"{counter}|{w.res}:{start}"))]
        f = max(finer, key=lambda v: v.bucket_ms)  # the next finer: few closed buckets
        current = f.bucket_start(t)
        name = f"{counter}|{f.res}"
        closed = [(False, bucket_key(group, f"{name}:{b}")) for b in range(start, current, f.bucket_ms)]
        return closed + self._split(group, counter, f, current, t)

    def _buckets(
        self, keys: list[str], item_ids: list[str], hashes: list[dict[str, float]] | None = None
    ) -> np.ndarray:
        """``(len(item_ids), len(keys))`` bucket counts: the store's ``read_fields`` or the hashes."""
        if self._fast:
            return self.store.read_fields(keys, item_ids).T  # type: ignore[attr-defined]
        if hashes is None:
            hashes = self.store.get_many(keys)
        zero, n = repeat(0.0), len(item_ids)
        out = np.zeros((len(keys), n))
        for row, h in zip(out, hashes, strict=True):
            if h:
                row[:] = np.fromiter(map(h.get, item_ids, zero), np.float64, n)
        return out.T

    def _item_matrix(
        self, item_ids: list[str], lay: _Layout, opened: np.ndarray, index: np.ndarray | None = None
    ) -> np.ndarray:
        """Window sums of every item column: the open buckets' counts ``opened`` plus the closed.

        Closed buckets (every in-window bucket but the current one of each resolution) no longer
        change, so their per-item sums are cached until ``t`` enters a new bucket; only the open
        buckets (a few keys, read with the user's hashes) are read on every request.
        """
        out, n = opened @ lay.open_proj, len(item_ids)
        if not lay.closed_keys:
            return out
        if index is not None:
            return out + self._closed_by_index(lay, index)
        if len(lay.closed) > 500_000:
            lay.closed.clear()
        idx = np.fromiter(map(lay.closed.get, item_ids, repeat(-1)), np.intp, n)
        if idx.size and idx.min() < 0:
            at = np.flatnonzero(idx < 0).tolist()
            miss = list(dict.fromkeys(item_ids[k] for k in at))
            rows = self._buckets(lay.closed_keys, miss) @ lay.closed_proj
            start = len(lay.closed)
            if start + len(miss) > len(lay.rows):  # grow the row store (amortised doubling)
                grown = np.zeros((max(2 * len(lay.rows), start + len(miss), 1024), len(self._cols)))
                grown[:start] = lay.rows[:start]
                lay.rows = grown
            lay.rows[start : start + len(miss)] = rows
            lay.closed.update(zip(miss, range(start, start + len(miss)), strict=True))
            idx[at] = [lay.closed[item_ids[k]] for k in at]
        return out + lay.rows[idx]

    def _closed_by_index(self, lay: _Layout, index: np.ndarray) -> np.ndarray:
        """The closed buckets' sums of bound items ``index``, from the epoch's dense sums."""
        if lay.bound_sums is None:
            lay.bound_sums = self._bound_closed_sums(lay)
        return lay.bound_sums[index]

    def _bound_closed_sums(self, lay: _Layout) -> np.ndarray:
        """``(len(bound_items), columns)``: every bound item's sums over the epoch's closed buckets.

        Built once per epoch (at the first read by index after ``t`` enters a new bucket) in one
        pass over the closed hashes' entries: their cost is the events those buckets hold, not
        the catalogue, and no read afterwards looks a closed bucket up (at 1M items, reading
        the missing candidates' closed buckets on every request cost ~1 ms of a ~9 ms request).
        The array is ``8 x columns`` bytes per catalogue item (56 MB at 1M items, 7 columns).
        A field that is not a bound item (a hash's item unknown to this numbering) is skipped.
        """
        bound = self.bound_items or []
        if self._bound_positions is None:
            self._bound_positions = {k: i for i, k in enumerate(bound)}
        position = self._bound_positions.get
        sums = np.zeros((len(bound), len(self._cols)))
        for h, proj in zip(self.store.get_many(lay.closed_keys), lay.closed_proj, strict=True):
            if not h:
                continue
            at = np.fromiter(map(position, h, repeat(-1)), np.intp, len(h))
            values = np.fromiter(h.values(), np.float64, len(h))
            known = at >= 0
            sums[at[known]] += values[known, None] * proj  # a hash's fields are distinct items
        return sums

    def read(
        self,
        user_id: str,
        item_ids: Sequence[str],
        t: int | None = None,
        request_id: str | None = None,
        item_index: np.ndarray | None = None,
    ) -> FeatureVectors:
        """Feature vectors of ``user_id`` and ``item_ids`` at ``t`` (epoch ms; default now).

        ``item_index`` (optional): the items' positions in :attr:`bound_items`, i.e.
        ``item_ids[j] == bound_items[item_index[j]]``; the values are the same, found faster.
        """
        t = int(time.time() * 1000) if t is None else int(t)
        item_ids = list(item_ids)
        if item_index is not None and self.bound_items is None:
            raise ValueError("item_index needs bind_items() first")
        index = None if item_index is None else np.asarray(item_index, np.int64)
        lay = self._layout(t)
        keys = [feature_key("user", user_id, g) for g in (*USER_GROUPS, "recent")]
        k = len(keys)
        if self.catalog is None:
            keys += [f"{_ITEM}{i}:meta" for i in item_ids]
        if self._fast:  # the user's hashes and the open item buckets in one call
            hashes, opened = self.store.read_many(keys, lay.open_keys, item_ids)  # type: ignore[attr-defined]
            opened = opened.T
        else:
            hashes = self.store.get_many(keys + lay.open_keys)
            opened = self._buckets(lay.open_keys, item_ids, hashes[len(keys) :])
        user_sums = window_sums(dict(zip(USER_GROUPS, hashes[: k - 1], strict=True)), t)
        recent = read_recent(hashes[k - 1])
        matrix = self._item_matrix(item_ids, lay, opened, index)
        if index is not None and self._bound_meta is not None and self.catalog is not None:
            meta = self.catalog.meta_at(self._bound_meta[index])
        else:
            meta = self._meta(item_ids, hashes[k : len(keys)])
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
    """A JSON-lines log of a ``sample_rate`` fraction of served feature vectors (by request id).

    One line per sampled read: ``request_id``, ``feature_version``, ``user_id``, ``item_ids``, ``t``
    (epoch ms the features were computed at), ``user`` (user-level values) and ``items`` (one list
    per item-level feature, in ``item_ids`` order). ``background=False`` (default) appends in the
    caller; ``background=True`` queues and appends from a daemon thread (see the module docstring):
    :meth:`flush` waits for the queue, :meth:`close` flushes and stops the thread. Counters:
    ``logged`` lines written, ``dropped`` vectors refused by a full queue or a full day's file,
    ``failed`` lines lost to write errors (logged as warnings; serving never sees them).
    """

    def __init__(
        self,
        folder: str | Path,
        sample_rate: float = 0.01,
        *,
        background: bool = False,
        flush_interval_s: float = 1.0,
        max_pending_rows: int = 50_000,
        retain_days: int | None = None,
        max_day_bytes: int | None = None,
    ) -> None:
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError("sample_rate must be in [0, 1]")
        self.folder, self.sample_rate = Path(folder), sample_rate
        self.background, self.flush_interval_s = background, flush_interval_s
        self.max_pending_rows, self.retain_days = max_pending_rows, retain_days
        self.max_day_bytes = max_day_bytes
        self._days: set[str] = set()  # files this log has written to
        self.full_days: set[str] = set()
        """Day files found at ``max_day_bytes``: lines for them are dropped (counted in ``dropped``)."""
        self._threshold = int(sample_rate * 2**32)
        self.logged = self.dropped = self.failed = 0
        self._cond = threading.Condition()
        self._pending: list[tuple[str, FeatureVectors]] = []
        self._pending_rows = 0
        self._queued = self._done = 0  # vectors queued / written or failed, ever
        self._thread: threading.Thread | None = None
        self._closing = self._hurry = False

    def sampled(self, request_id: str) -> bool:
        """Whether ``request_id`` falls in the sample (the same answer every time)."""
        return zlib.crc32(request_id.encode()) < self._threshold

    def maybe_log(self, request_id: str, fv: FeatureVectors) -> bool:
        """Log ``fv`` if ``request_id`` is sampled and it has items; return whether it was taken."""
        if not self._threshold or not fv.item_ids or not self.sampled(request_id):
            return False
        if not self.background:
            self._write([self._line(request_id, fv)])
            return True
        n = len(fv.item_ids)
        with self._cond:
            if self._closing or self._pending_rows + n > self.max_pending_rows:
                self.dropped += 1
                return False
            self._pending.append((request_id, fv))
            self._pending_rows += n
            self._queued += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="funnel-served-features", daemon=True)
                self._thread.start()
                atexit.register(self.close)
        return True

    @property
    def pending(self) -> int:
        """Vectors queued and not yet written."""
        with self._cond:
            return self._queued - self._done

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Write everything queued so far now; False if ``timeout`` (seconds) passed first."""
        with self._cond:
            target = self._queued
            if self._thread is None or self._done >= target:
                return True
            self._hurry = True
            self._cond.notify_all()
            return self._cond.wait_for(lambda: self._done >= target, timeout)

    def close(self, timeout: float | None = 10.0) -> None:
        """Flush, then stop the writer thread; idempotent (a later sampled vector starts a new one)."""
        self.flush(timeout)
        with self._cond:
            thread = self._thread
            if thread is None or thread is threading.current_thread():
                return
            self._closing = True
            self._cond.notify_all()
        thread.join(timeout)
        atexit.unregister(self.close)
        with self._cond:
            if not thread.is_alive():  # usable again: the next sampled vector starts a new thread
                self._thread, self._closing = None, False

    def _run(self) -> None:
        """The writer thread: every ``flush_interval_s`` (or on :meth:`flush`), append the queue."""
        while True:
            with self._cond:
                if not (self._hurry or self._closing):
                    self._cond.wait(self.flush_interval_s)
                batch, self._pending, self._pending_rows, self._hurry = self._pending, [], 0, False
                if not batch and self._closing:
                    return
            if batch:
                try:
                    self._write([self._line(rid, fv) for rid, fv in batch])
                except Exception:  # never let the thread die: count and go on
                    log.exception("served-feature log: %d vector(s) not written", len(batch))
                with self._cond:
                    self._done += len(batch)
                    self._cond.notify_all()

    @staticmethod
    def _line(request_id: str, fv: FeatureVectors) -> tuple[str, str]:
        """``(file name, JSON line)`` of one vector: the JSON of :meth:`FeatureVectors.to_dict` and its ids.

        Built one item feature at a time: each ``json.dumps`` call holds the GIL throughout, so a
        whole vector of a thousand candidates in one call would stall the request threads for
        milliseconds; per feature it is a fraction of one.
        """
        day = time.strftime("%Y-%m-%d", time.gmtime(fv.t / 1000))
        dumps = json.JSONEncoder(separators=(",", ":")).encode
        head = {"request_id": request_id, "feature_version": FEATURE_VERSION, "user_id": fv.user_id,
                "item_ids": fv.item_ids, "t": fv.t, "user": fv.user}  # fmt: skip
        items = ",".join(f"{dumps(k)}:{dumps(v.tolist())}" for k, v in fv.items.items())
        return f"served-{day}.jsonl", f'{dumps(head)[:-1]},"items":{{{items}}}}}\n'

    def _write(self, lines: list[tuple[str, str]]) -> None:
        """Append ``lines`` grouped by file: one ``write`` per file on an ``O_APPEND`` descriptor."""
        files: dict[str, list[str]] = {}
        for name, text in lines:
            files.setdefault(name, []).append(text)
        for name, texts in files.items():
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                data = "".join(texts).encode()
                fd = os.open(self.folder / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    full = self.max_day_bytes is not None and os.fstat(fd).st_size >= self.max_day_bytes
                    view = memoryview(b"" if full else data)
                    while view:
                        view = view[os.write(fd, view) :]
                finally:
                    os.close(fd)
                if full:
                    if name not in self.full_days:
                        log.warning("served-feature log: %s reached %d bytes; not logging to it", name,
                                    self.max_day_bytes)  # fmt: skip
                    self.full_days.add(name)
                    self.dropped += len(texts)
                    continue
                self.logged += len(texts)
            except OSError as exc:
                self.failed += len(texts)
                log.warning("served-feature log: %d line(s) not written to %s: %s", len(texts), name, exc)
                continue
            if name not in self._days:
                self._days.add(name)
                self._prune(name)

    def _prune(self, newest: str) -> None:
        """Delete the files more than ``retain_days`` before ``newest`` (``served-YYYY-MM-DD.jsonl``)."""
        if self.retain_days is None:
            return
        try:
            cut = (date.fromisoformat(newest[7:17]) - timedelta(days=self.retain_days)).isoformat()
            for path in self.folder.glob("served-*.jsonl"):
                if path.name[7:17] < cut:
                    path.unlink(missing_ok=True)
        except (OSError, ValueError) as exc:
            log.warning("served-feature log: old files not pruned: %s", exc)

    def read(self) -> list[dict]:
        """Every logged line, oldest file first (after a :meth:`flush`; a torn last line is skipped)."""
        self.flush()
        out = []
        for path in sorted(self.folder.glob("served-*.jsonl")):
            out.extend(parse_lines(path.read_text(encoding="utf-8")))
        return out


def parse_lines(text: str) -> list[dict]:
    """The JSON lines of ``text``; a line cut short (a write in progress) is skipped."""
    out = []
    for x in text.splitlines():
        if x:
            try:
                out.append(json.loads(x))
            except ValueError:
                continue
    return out
