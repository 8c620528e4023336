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

Example: see :class:`funnel.ranking.model.RankingPipeline`, which drives it.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from funnel.features.definitions import FEATURES, FeatureDef
from funnel.features.offline import OfflineStore
from funnel.features.serving import FeatureVectors
from funnel.ranking.features import Context, FeatureMatrix, ItemStatics, build_features, per_item
from funnel.retrieval.merge import MergedCandidates
from funnel.retrieval.sources.common import member


def user_hash(user_id: str, salt: str) -> float:
    """A stable number in ``[0, 1)`` for ``user_id`` (independent of every other user)."""
    return zlib.crc32(f"{salt}:{user_id}".encode()) / 2**32


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
) -> tuple[list[np.ndarray], dict[str, list[np.ndarray]], dict[str, int]]:
    """Per user, the candidate positions kept as rows and each head's labels of them."""
    keep_rows: list[np.ndarray] = []
    labels: dict[str, list[np.ndarray]] = {h: [] for h in positives}
    stats = {"users_no_engaged_candidate": 0, "users": 0}
    for m, u, uid in zip(merged, user_idx.tolist(), user_ids, strict=True):
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
        rows = np.sort(np.concatenate([np.flatnonzero(any_pos), neg]))
        keep_rows.append(rows)
        for h in labels:
            labels[h].append(hit[h][rows].astype(np.float32))
    return keep_rows, labels, stats


def subset(m: MergedCandidates, rows: np.ndarray) -> MergedCandidates:
    """The candidates at positions ``rows`` (ranks and scores kept as retrieved)."""
    return MergedCandidates(
        m.items[rows],
        m.scores[rows],
        m.ranks[rows],
        m.reason[rows],
        m.anchor[rows],
        m.source[rows],
        m.sources,
    )


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
