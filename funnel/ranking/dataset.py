"""The ranker's training rows: retrieval candidates of label-window users, point-in-time features.

Given sources fitted on the *history* part only (see :mod:`funnel.ranking.labels`), every sampled
user active in the label window is asked for candidates as of the cut, exactly as serving would.
Each candidate positive for some head is a row; so are ``negatives`` candidates drawn uniformly
from the rest (retrieved but not engaged with). Users without an engaged item among their
candidates add nothing to a ranking objective and are left out (counted in ``stats``).

Features come from :class:`~funnel.features.offline.OfflineStore` at the cut — events strictly
before it — through the same :func:`~funnel.ranking.features.build_features` serving uses. User
sampling and the negatives are seeded per user id (a hash), so they do not depend on other users'
events: the leakage test adds or removes a label-window event and sees the same rows.

With logged impressions (:func:`window_impressions`), items shown to a label user inside their
window and not engaged there are negatives too: every one, whether or not retrieval returned it
(an item it did not return is appended with ``NaN`` source scores and ranks, :func:`append_items`,
and goes through the same ``build_features``). Engaged rows clicked at a known position are
weighted by inverse examination propensity (:func:`row_weights`); every other row weighs 1.

Example: see :class:`funnel.ranking.model.RankingPipeline`, which drives it.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from funnel.core.arrays import object_full
from funnel.features.definitions import FEATURES, FeatureDef
from funnel.features.offline import OfflineStore
from funnel.features.serving import FeatureVectors
from funnel.ranking.features import Context, FeatureMatrix, ItemStatics, build_features, per_item
from funnel.ranking.position_bias import ImpressionSlots, PositionBiasModel
from funnel.retrieval.merge import MergedCandidates
from funnel.retrieval.sources.common import member


def user_hash(user_id: str, salt: str) -> float:
    """A stable number in ``[0, 1)`` for ``user_id`` (independent of every other user and salt).

    BLAKE2b, not CRC-32: a CRC is affine in its input, so the CRCs of one id under two salts differ
    by a constant XOR and their thresholds select correlated users. With ``crc32``, once the label
    sample kept a small share of the label users (``sample0`` hash below 3000 / their number; 5% of
    100k synthetic ids) every sampled user also fell in the validation share (``valid0`` hash below
    0.2): a 1M-interaction training fitted the ranker on no rows and served the retrieval order.

    >>> round(user_hash("u1", "valid0"), 6) != round(user_hash("u1", "sample0"), 6)
    True
    """
    digest = hashlib.blake2b(f"{salt}:{user_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass
class TrainingRows:
    """Rows grouped by user: features, per-head labels, and where each row came from."""

    X: np.ndarray
    names: tuple[str, ...]
    group_sizes: np.ndarray
    labels: dict[str, np.ndarray]
    user_ids: list[str]
    items: np.ndarray
    stats: dict[str, int] = field(default_factory=dict)
    weights: np.ndarray | None = None

    @staticmethod
    def concat(parts: Sequence[TrainingRows]) -> TrainingRows:
        """The groups of ``parts``, in order (stats summed; weights 1 where a part has none)."""
        weighted = any(p.weights is not None for p in parts)
        stats: dict[str, int] = {}
        for p in parts:
            for key, value in p.stats.items():
                stats[key] = stats.get(key, 0) + value
        return TrainingRows(
            np.concatenate([p.X for p in parts]),
            parts[0].names,
            np.concatenate([p.group_sizes for p in parts]),
            {h: np.concatenate([p.labels[h] for p in parts]) for h in parts[0].labels},
            [u for p in parts for u in p.user_ids],
            np.concatenate([p.items for p in parts]),
            stats,
            np.concatenate([np.ones(len(p.X), np.float32) if p.weights is None else p.weights for p in parts])
            if weighted else None,
        )  # fmt: skip

    def take_groups(self, keep: np.ndarray) -> TrainingRows:
        """The rows of the groups where ``keep`` (one bool per group) is true."""
        row_group = np.repeat(np.arange(len(self.group_sizes)), self.group_sizes)
        rows = keep[row_group]
        return TrainingRows(
            self.X[rows],
            self.names,
            self.group_sizes[keep],
            {h: y[rows] for h, y in self.labels.items()},
            [u for u, k in zip(self.user_ids, keep.tolist(), strict=True) if k],
            self.items[rows],
            weights=None if self.weights is None else self.weights[rows],
        )


def offline_vectors(
    offline: OfflineStore,
    user_ids: Sequence[str],
    item_ids: Sequence[Sequence[str]],
    t: int | np.ndarray,
    defs: Sequence[FeatureDef] = FEATURES,
) -> list[FeatureVectors]:
    """Point-in-time feature vectors of each user and their items, in one offline query.

    ``t`` is one time for all users or one per user.
    """
    sizes = np.fromiter(map(len, item_ids), np.int64, len(item_ids))
    times = np.broadcast_to(np.asarray(t, dtype=np.int64), (len(item_ids),))
    flat_items = [i for ids in item_ids for i in ids]
    rows = pa.table(
        {
            "user_id": pa.array(np.repeat(np.asarray(user_ids, dtype=object), sizes), pa.string()),
            "item_id": pa.array(flat_items, pa.string()),
            "timestamp": pa.array(np.repeat(times, sizes)),
        }
    )
    table = offline.get_historical_features(rows)
    item_names = [f.name for f in defs if per_item(f)]
    user_names = [f.name for f in defs if not per_item(f)]
    columns = {f.name: table.column(f.name) for f in defs}
    arrays = {n: columns[n].to_numpy() for n in item_names}
    ends = np.cumsum(sizes)
    out = []
    for k, user in enumerate(user_ids):
        start, end = int(ends[k] - sizes[k]), int(ends[k])
        if start == end:
            user_vals: dict[str, object] = {n: 0 for n in user_names}
            user_vals.update({f.name: [] for f in defs if f.dtype == "list"})
        else:
            user_vals = {n: columns[n][start].as_py() for n in user_names}
        items = {n: a[start:end] for n, a in arrays.items()}
        out.append(FeatureVectors(user, list(item_ids[k]), int(times[k]), user_vals, items))
    return out


def candidate_rows(
    merged: Sequence[MergedCandidates],
    user_idx: np.ndarray,
    user_ids: Sequence[str],
    n_items: int,
    positives: dict[str, np.ndarray],
    negatives: int,
    seed: int,
    shown: Sequence[np.ndarray] | None = None,
) -> tuple[list[np.ndarray], dict[str, list[np.ndarray]], dict[str, int]]:
    """Per user, the candidate positions kept as rows and each head's labels of them.

    ``shown`` (per user, sorted item indices): impressed-but-not-engaged items, always kept as rows
    (on top of the ``negatives`` sampled from the rest).
    """
    keep_rows: list[np.ndarray] = []
    labels: dict[str, list[np.ndarray]] = {h: [] for h in positives}
    stats = {"users_no_engaged_candidate": 0, "users": 0}
    for k, (m, u, uid) in enumerate(zip(merged, user_idx.tolist(), user_ids, strict=True)):
        keys = u * n_items + m.items.astype(np.int64)
        hit = {h: member(keys, p) for h, p in positives.items()}
        if not hit["engage"].any():
            stats["users_no_engaged_candidate"] += 1
            keep_rows.append(np.zeros(0, dtype=np.int64))
            for h in labels:
                labels[h].append(np.zeros(0, dtype=np.float32))
            continue
        stats["users"] += 1
        any_pos = np.logical_or.reduce(list(hit.values()))
        rest = np.flatnonzero(~any_pos)
        rng = np.random.default_rng(zlib.crc32(f"{seed}:{uid}".encode()))
        neg = rng.choice(rest, min(negatives, len(rest)), replace=False) if len(rest) else rest
        forced = np.zeros(0, dtype=np.int64)
        if shown is not None:
            forced = np.flatnonzero(member(m.items.astype(np.int64), shown[k]) & ~any_pos)
        rows = np.union1d(np.concatenate([np.flatnonzero(any_pos), neg]), forced) if len(forced) else (
            np.sort(np.concatenate([np.flatnonzero(any_pos), neg]))
        )  # fmt: skip
        keep_rows.append(rows)
        for h in labels:
            labels[h].append(hit[h][rows].astype(np.float32))
    return keep_rows, labels, stats


def subset(m: MergedCandidates, rows: np.ndarray) -> MergedCandidates:
    """The candidates at positions ``rows`` (ranks, scores and merge positions kept as retrieved)."""
    return MergedCandidates(
        m.items[rows],
        m.scores[rows],
        m.ranks[rows],
        m.reason[rows],
        m.anchor[rows],
        m.source[rows],
        m.sources,
        m.positions()[rows],
    )


def append_items(m: MergedCandidates, items: np.ndarray) -> MergedCandidates:
    """``m`` with ``items`` it does not hold appended: ``NaN`` source scores and ranks, source ``-1``."""
    extra = np.setdiff1d(np.asarray(items, dtype=np.int64), m.items.astype(np.int64))
    if not len(extra):
        return m
    s, n = len(m.sources), len(extra)
    return MergedCandidates(
        np.concatenate([m.items, extra.astype(np.int32)]),
        np.concatenate([m.scores, np.full((n, s), np.nan, np.float32)]),
        np.concatenate([m.ranks, np.full((n, s), np.nan, np.float32)]),
        np.concatenate([m.reason, object_full(n, "impression")]),
        np.concatenate([m.anchor, np.full(n, -1, np.int32)]),
        np.concatenate([m.source, np.full(n, -1, np.int16)]),
        m.sources,
        np.concatenate([m.positions(), np.full(n, np.nan, np.float32)]),
    )


def window_impressions(
    slots: ImpressionSlots, users: np.ndarray, cuts: np.ndarray, n_items: int, engaged: np.ndarray,
    seen: np.ndarray,
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:  # fmt: skip
    """The label window's impressions of ``users`` (cut at ``cuts[user]``).

    Returns, per user of ``users``, the sorted items shown in the window that are neither engaged
    there (``engaged``: sorted ``user * n_items + item`` keys) nor in the user's history (``seen``,
    keys likewise: serving never shows them again); and the keys and positions of the clicked
    window slots (the earliest slot per key).
    """
    slot_of = np.full(len(cuts), -1, dtype=np.int64)
    slot_of[users] = np.arange(len(users))
    k = slot_of[slots.user]
    inside = (k >= 0) & (slots.timestamp >= cuts[slots.user])
    key = slots.user * n_items + slots.item
    neg = inside & ~member(key, engaged) & ~member(key, seen)
    pairs = np.unique(k[neg] * n_items + slots.item[neg])
    bounds = np.searchsorted(pairs // n_items, np.arange(len(users) + 1))
    shown = [pairs[bounds[j] : bounds[j + 1]] % n_items for j in range(len(users))]
    hit = np.flatnonzero(inside & slots.clicked)
    hit = hit[np.lexsort((slots.timestamp[hit], key[hit]))]
    first = np.r_[True, key[hit][1:] != key[hit][:-1]] if len(hit) else np.zeros(0, dtype=bool)
    return shown, key[hit][first], slots.position[hit][first]


def row_weights(
    row_keys: np.ndarray, engaged: np.ndarray, click_keys: np.ndarray, click_pos: np.ndarray,
    bias: PositionBiasModel, max_weight: float,
) -> np.ndarray:  # fmt: skip
    """``float32`` weight per row: ``min(1 / θ_p, max_weight)`` or 1.

    An engaged row whose key is among ``click_keys`` (sorted, from :func:`window_impressions`) was
    clicked at position ``p``; every other row weighs 1.
    """
    at = np.minimum(np.searchsorted(click_keys, row_keys), max(len(click_keys) - 1, 0))
    found = (engaged > 0) & (len(click_keys) > 0)
    if len(click_keys):
        found &= click_keys[at] == row_keys
    pos = np.where(found, click_pos[at] if len(click_keys) else -1, -1)
    return bias.weights(pos, max_weight).astype(np.float32)


def feature_rows(
    vectors: Sequence[FeatureVectors],
    merged: Sequence[MergedCandidates],
    statics: ItemStatics,
    contexts: Sequence[Context] | None = None,
) -> FeatureMatrix:
    """``build_features`` of every user, stacked (the rows of one batch, users in order)."""
    mats = [
        build_features(fv, m, contexts[k] if contexts else Context(), statics)
        for k, (fv, m) in enumerate(zip(vectors, merged, strict=True))
    ]
    if not mats:
        raise ValueError("no users to build features for")
    return FeatureMatrix(np.concatenate([x.values for x in mats]), mats[0].names)
