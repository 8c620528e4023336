"""The interaction process: sessions, served slates, and the feedback sampled from the truth.

Sessions are drawn chunk by chunk (users weighted by activity, times uniform over each user's
lifetime in the window), so generation can stop as soon as the interaction target is reached
without biasing the time coverage. Per chunk everything is vectorised over ``sessions × slots``:

* a **slate** of ``slate_size`` items, each slot drawn from one source of the logging policy —
  popularity (the exposure prior), one of the user's current favourite categories (popularity-
  weighted inside it), fresh items (published in the last 7 days) or uniform — among items already
  published; policy violations (``18+`` for minors, other-region items) and duplicates are
  replaced by a uniformly drawn all-ages, all-regions item, and what is still invalid is dropped;
* **clicks** with ``P = position_bias[pos] * sigmoid(logit)``, ``logit = affinity - click_offset``;
  explicit **skips** of unclicked slots with ``P = skip_rate * position_bias[pos] * sigmoid(-logit)``;
* **organic** sessions (no slate shown): the user picks one of ``slate_size`` candidates (drawn like
  a slate) by softmax over affinity and emits a ``view`` with no request_id or position;
* after a click or a view: ``watch`` with probability ``watch_rate`` (completion
  ``sigmoid(1.2 (logit + 1.5) + device shift + N(0, 0.7²))``, 1.0 above 0.97), ``like`` with
  ``sigmoid(2 (logit - like_threshold))`` and ``rating`` with ``rating_rate`` (value
  ``rint(3.5 + 0.55 (logit + 1) + N(0, 0.6²))`` clipped to 1–5).

Event times increase within a session (positive gaps summed from the session start).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from funnel.core.schema import EVENT_CODE
from funnel.data.synthetic.config import DAY_MS, SyntheticConfig
from funnel.data.synthetic.truth import GroundTruth

MAX_CHUNK = 32_768
"""Sessions per vectorised chunk (bounds the per-chunk memory to ~100 MB at dim 32)."""
FRESH_WINDOW_MS = 7 * DAY_MS
"""Items published this recently feed the ``fresh`` source of the logging policy."""
GAP_MEAN_S = np.array([6.0, 300.0, 3.0, 5.0])
"""Mean extra seconds before an event of each slot kind (a watch lasts minutes)."""


@dataclass
class EventLog:
    """Raw simulated events and impressions as parallel arrays, sorted by time."""

    user: np.ndarray
    item: np.ndarray
    timestamp: np.ndarray
    type_code: np.ndarray
    value: np.ndarray
    request: np.ndarray
    position: np.ndarray
    imp_request: np.ndarray
    imp_user: np.ndarray
    imp_timestamp: np.ndarray
    imp_offsets: np.ndarray
    imp_items: np.ndarray
    n_sessions: int


class _Exposure:
    """Sampling indexes of the logging policy, built once from the truth."""

    def __init__(self, truth: GroundTruth, cfg: SyntheticConfig) -> None:
        n = truth.n_items
        self.pub = truth.item_published_ms.astype(np.float64)
        self.cum_pop = np.cumsum(truth.item_popularity, dtype=np.float64)
        cats = truth.item_categories
        member = np.concatenate([np.arange(n), np.flatnonzero(cats[:, 1] >= 0)])
        cat_of = np.concatenate([cats[:, 0], cats[cats[:, 1] >= 0, 1]]).astype(np.int64)
        keys = cat_of * n + member
        order = np.argsort(keys, kind="stable")
        self.cat_keys, self.cat_items = keys[order], member[order]
        self.cat_ptr = np.searchsorted(self.cat_keys, np.arange(cfg.n_categories + 1) * n)
        weights = truth.item_popularity[self.cat_items].astype(np.float64)
        self.cat_cw = np.concatenate([[0.0], np.cumsum(weights)])
        self.safe = np.flatnonzero((truth.item_age_rating < 2) & (truth.item_region < 0))
        self.safe_pub = self.pub[self.safe]
        minors = [cfg.age_buckets.index(a) for a in cfg.minor_age_buckets]
        self.minor = np.isin(truth.user_age_bucket, minors)
        margin = 0.02 * (cfg.end_ms - cfg.start_ms)
        self.user_lo = np.maximum(truth.user_created_ms, cfg.start_ms).astype(np.float64)
        self.user_span = np.maximum(cfg.end_ms - margin - self.user_lo, 1.0)
        self.act_cum = np.cumsum(truth.user_activity * self.user_span, dtype=np.float64)
        self.mix_cum = np.cumsum(cfg.source_mix) / sum(cfg.source_mix)
        self.buffer = np.empty((0, 0, 0), dtype=np.float32)

    def slates(self, truth: GroundTruth, rng: np.random.Generator, users: np.ndarray, t0: np.ndarray, S: int):
        """Candidate slates ``(n, S)`` with a validity mask; valid slots are moved to the front."""
        n = len(users)
        npub = _search(self.pub, t0, side="right")
        src = np.searchsorted(self.mix_cum, rng.random((n, S)), side="right")
        r = rng.random((n, S))
        slate = np.empty((n, S), dtype=np.int64)
        rows = np.broadcast_to(np.arange(n)[:, None], (n, S))
        at = src == 0  # popularity among published items
        slate[at] = self._popular(r[at], npub[rows[at]])
        at = src == 1  # a favourite category (drawn from the user's current mixture)
        if at.any():
            mix = np.cumsum(truth.user_categories(users, t0), axis=1, dtype=np.float64)
            mix /= mix[:, -1:]
            K, sel = mix.shape[1], rows[at]
            offset = np.arange(n, dtype=np.float64)[:, None]
            cat = np.searchsorted((mix + offset).ravel(), rng.random(len(sel)) + sel, side="right")
            cat = np.minimum(cat - sel * K, K - 1)
            slate[at] = self._in_category(truth, cat, r[at], npub[sel])
        at = src >= 2  # fresh (published in the last week), else uniform
        nfresh = _search(self.pub, t0 - FRESH_WINDOW_MS, side="right")
        lo = np.where((src == 2) & (npub > nfresh)[:, None], nfresh[:, None], 0)[at]
        slate[at] = lo + (r[at] * (npub[rows[at]] - lo)).astype(np.int64)
        country = truth.user_country[users][:, None]
        region, rating = truth.item_region[slate], truth.item_age_rating[slate]
        bad = (slate >= npub[:, None]) | ((region >= 0) & (region != country))
        bad |= self.minor[users][:, None] & (rating >= 2)
        bad |= _duplicates(slate)
        nsafe = np.searchsorted(self.safe_pub, t0, side="right")[rows[bad]]
        fixable = nsafe > 0
        draw = (rng.random(len(nsafe)) * nsafe).astype(np.int64)
        slate[bad] = np.where(fixable, self.safe[np.minimum(draw, max(len(self.safe) - 1, 0))], -1)
        valid = (slate >= 0) & ~_duplicates(slate)
        order = np.argsort(~valid, axis=1, kind="stable")
        return np.take_along_axis(slate, order, axis=1), np.take_along_axis(valid, order, axis=1)

    def _popular(self, r: np.ndarray, npub: np.ndarray) -> np.ndarray:
        """Items drawn by exposure prior among the first ``npub`` (the published ones)."""
        tot = self.cum_pop[np.maximum(npub, 1) - 1]
        return _search(self.cum_pop, r * tot, side="right")

    def _in_category(
        self, truth: GroundTruth, cat: np.ndarray, r: np.ndarray, npub: np.ndarray
    ) -> np.ndarray:
        """Items of ``cat`` drawn by exposure prior among the published ones (else by popularity)."""
        start = self.cat_ptr[cat]
        count = _search(self.cat_keys, cat * truth.n_items + npub) - start
        lo_w, hi_w = self.cat_cw[start], self.cat_cw[start + count]
        pos = _search(self.cat_cw, lo_w + r * (hi_w - lo_w), side="right") - 1
        found = count > 0
        pick = self.cat_items[np.where(found, np.clip(pos, start, start + count - 1), 0)]
        return np.where(found, pick, self._popular(r, npub))


def _search(a: np.ndarray, q: np.ndarray, side: str = "left") -> np.ndarray:
    """``np.searchsorted(a, q)`` for unsorted ``q`` of any shape, ~4x faster on large ``a``.

    Sorted queries let NumPy narrow each binary search from the previous answer (and stay in cache).
    """
    flat = q.ravel()
    order = np.argsort(flat)
    out = np.empty(len(flat), dtype=np.int64)
    out[order] = np.searchsorted(a, flat[order], side=side)  # type: ignore[call-overload]
    return out.reshape(q.shape)


def _duplicates(slate: np.ndarray) -> np.ndarray:
    """True at every repeated occurrence of an item within a row (the first one stays False)."""
    order = np.argsort(slate, axis=1, kind="stable")
    srt = np.take_along_axis(slate, order, axis=1)
    dup = np.zeros(slate.shape, dtype=bool)
    np.put_along_axis(dup, order[:, 1:], srt[:, 1:] == srt[:, :-1], axis=1)
    return dup


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _chunk(truth: GroundTruth, cfg: SyntheticConfig, ex: _Exposure, rng: np.random.Generator, n: int):
    """Simulate ``n`` sessions; returns per-session info and the (n, S, 4) event mask with payloads."""
    S = cfg.slate_size
    users = _search(ex.act_cum, rng.random(n) * ex.act_cum[-1], side="right")
    users = np.minimum(users, truth.n_users - 1)
    t0 = np.floor(ex.user_lo[users] + rng.random(n) * ex.user_span[users])
    organic = rng.random(n) < cfg.organic_rate
    slate, valid = ex.slates(truth, rng, users, t0, S)
    uf = truth.user_factors(users, t0)
    if ex.buffer.shape[0] < n:  # reused: a fresh 40 MB gather per chunk costs page faults
        ex.buffer = np.empty((n, S, truth.item_factors.shape[1]), dtype=truth.item_factors.dtype)
    vectors = np.take(truth.item_factors, slate, axis=0, out=ex.buffer[:n])
    aff = np.einsum("nd,nsd->ns", uf, vectors)
    age = t0[:, None] - truth.item_published_ms[slate]
    aff += truth.item_bias[slate] + truth.freshness_boost * np.exp2(-age / truth.freshness_halflife_ms)
    logit = aff - truth.click_offset
    served = valid & ~organic[:, None]
    examined = truth.position_bias[None, :] * _sigmoid(logit)
    click = served & (rng.random((n, S)) < examined)
    skip = served & ~click & (rng.random((n, S)) < cfg.skip_rate * (truth.position_bias - examined))
    view = np.zeros((n, S), dtype=bool)
    rows = np.flatnonzero(organic & valid[:, 0])  # organic: pick one candidate by softmax(affinity)
    gumbel = -np.log(-np.log(rng.random((len(rows), S)) + 1e-300) + 1e-300)
    view[rows, np.argmax(np.where(valid[rows], aff[rows] + gumbel, -np.inf), axis=1)] = True
    es, ep = np.nonzero(click | view)
    m, lg = len(es), logit[es, ep]
    mask = np.zeros((n, S, 4), dtype=bool)
    mask[:, :, 0] = click | skip | view
    mask[es, ep, 1] = rng.random(m) < cfg.watch_rate
    mask[es, ep, 2] = rng.random(m) < _sigmoid(2.0 * (lg - cfg.like_threshold))
    mask[es, ep, 3] = rng.random(m) < cfg.rating_rate
    device = truth.device_completion_shift[truth.user_device[users[es]]]
    comp = _sigmoid(1.2 * (lg + 1.5) + device + 0.7 * rng.standard_normal(m))
    values = np.zeros((n, S, 2))
    values[es, ep, 0] = np.where(comp > 0.97, 1.0, np.round(comp, 3))
    values[es, ep, 1] = np.clip(np.rint(3.5 + 0.55 * (lg + 1.0) + 0.6 * rng.standard_normal(m)), 1, 5)
    first = np.where(click, EVENT_CODE["click"], np.where(skip, EVENT_CODE["skip"], EVENT_CODE["view"]))
    return users, t0, organic, slate, valid, mask, first, values[:, :, 0], values[:, :, 1]


def _events(
    mask: np.ndarray, first: np.ndarray, comp: np.ndarray, stars: np.ndarray, rng: np.random.Generator
):
    """Flatten the event mask into (session, slot, type, value, offset ms) arrays in time order."""
    si, pos, kind = np.nonzero(mask)
    codes = np.array([0, EVENT_CODE["watch"], EVENT_CODE["like"], EVENT_CODE["rating"]], dtype=np.int8)
    type_code = np.where(kind == 0, first[si, pos], codes[kind]).astype(np.int8)
    value = np.full(len(si), np.nan)
    value = np.where(kind == 1, comp[si, pos], value)
    value = np.where(kind == 3, stars[si, pos], value)
    gap_s = 1.0 + rng.exponential(1.0, len(si)) * GAP_MEAN_S[kind]
    gap_s = np.where(kind == 1, 5.0 + gap_s * comp[si, pos], gap_s)
    cum = np.cumsum(np.rint(gap_s * 1000.0).astype(np.int64))
    starts = np.flatnonzero(np.r_[True, si[1:] != si[:-1]]) if len(si) else np.zeros(0, dtype=np.int64)
    seg = np.cumsum(np.r_[True, si[1:] != si[:-1]]) - 1 if len(si) else np.zeros(0, dtype=np.int64)
    prev = np.r_[0, cum[:-1]] if len(si) else cum
    offset = cum - prev[starts][seg]
    return si, pos, type_code, value, offset


def simulate(truth: GroundTruth, cfg: SyntheticConfig, rng: np.random.Generator) -> EventLog:
    """Run sessions until ``cfg.n_interactions`` events exist; return them sorted by time."""
    ex = _Exposure(truth, cfg)
    events: list[list[np.ndarray]] = [[] for _ in range(7)]
    shown: list[list[np.ndarray]] = [[] for _ in range(4)]
    total, sessions, rate = 0, 0, 1.0
    while total < cfg.n_interactions and sessions < 1000 * cfg.n_interactions + 100_000:
        need = cfg.n_interactions - total
        n = int(min(MAX_CHUNK, max(256, np.ceil(1.1 * need / rate))))
        users, t0, organic, slate, valid, mask, first, comp, stars = _chunk(truth, cfg, ex, rng, n)
        cum = np.cumsum(mask.sum(axis=(1, 2)))
        keep = n if cum[-1] < need else int(np.searchsorted(cum, need)) + 1
        si, pos, type_code, value, offset = _events(mask[:keep], first, comp, stars, rng)
        ts = np.minimum(t0[si].astype(np.int64) + offset, cfg.end_ms - 1)
        request = np.where(organic[si], -1, sessions + si)
        position = np.where(organic[si], -1, pos).astype(np.int32)
        item = slate[si, pos].astype(np.int32)
        for j, column in enumerate(
            (users[si].astype(np.int32), item, ts, type_code, value, request, position)
        ):
            events[j].append(column)
        served = np.flatnonzero(~organic[:keep] & valid[:keep, 0])
        slates = np.where(valid[served], slate[served], -1).astype(np.int32)
        for j, column in enumerate((sessions + served, users[served].astype(np.int32), t0[served], slates)):
            shown[j].append(column)
        total += int(cum[keep - 1])
        sessions += keep
        rate = max(total / sessions, 1e-3)
    user, item, ts, type_code, value, request, position = _concat_sorted(events, key=2)
    imp_request, imp_user, imp_ts, slates = _concat_sorted(shown, key=2)
    valid_slots = slates >= 0
    return EventLog(
        user=user,
        item=item,
        timestamp=ts,
        type_code=type_code,
        value=value,
        request=request,
        position=position,
        imp_request=imp_request,
        imp_user=imp_user,
        imp_timestamp=imp_ts.astype(np.int64),
        imp_offsets=np.concatenate([[0], np.cumsum(valid_slots.sum(axis=1))]).astype(np.int64),
        imp_items=slates[valid_slots],
        n_sessions=sessions,
    )


def _concat_sorted(columns: list[list[np.ndarray]], key: int) -> list[np.ndarray]:
    """Concatenate each column's chunks (releasing them) and sort every column by column ``key``."""
    flat = []
    for chunks in columns:
        flat.append(np.concatenate(chunks))
        chunks.clear()
    order = np.argsort(flat[key], kind="stable")
    for j, column in enumerate(flat):
        flat[j] = column[order]
    return flat
