"""``GroundTruth``: the hidden model the synthetic interactions were sampled from.

The true affinity of user ``u`` for item ``i`` at time ``t`` (epoch ms) is::

    affinity = u(t) · v_i + b_i + freshness_boost * 2 ** (-max(t - published_i, 0) / halflife)
    u(t)     = (1 - w) * user_factors_start[u] + w * user_factors_end[u],  w = (t - start) / (end - start)

and a shown item is clicked with probability ``position_bias[pos] * sigmoid(affinity - click_offset)``.
``top_k`` ranks by ``affinity`` among the items published by ``t``: it is the oracle a learned model
is measured against. All arrays are plain NumPy, so the truth saves to ``.npz`` without pickle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import scipy.sparse as sp

ArrayLike = np.ndarray | Sequence[int] | int


@dataclass
class GroundTruth:
    """The latent world behind a synthetic dataset (indices are the table row orders).

    Users: ``user_factors_start`` / ``user_factors_end`` (n_users×dim, tastes at the window's start
    and end, linearly interpolated in between), ``user_category_start`` / ``user_category_end``
    (n_users×n_categories taste mixtures, same interpolation), segment codes ``user_country``,
    ``user_age_bucket``, ``user_device`` (indices into the config lists), ``user_created_ms``,
    ``user_activity`` (relative session rate).
    Items: ``item_factors`` (n_items×dim), ``item_bias`` (quality), ``item_popularity`` (exposure
    prior of the logging policy), ``item_published_ms``, ``item_categories`` (n_items×2, second
    column ``-1`` when the item has one category), ``item_creator``, ``item_age_rating`` (0 all,
    1 13+, 2 18+), ``item_region`` (country code, ``-1`` = everywhere), ``item_sponsored``.
    World: ``category_factors``, ``creator_factors``, ``position_bias`` (examination probability
    per slot), ``device_completion_shift`` (watch-completion logit shift per device), and the
    scalars ``start_ms``, ``end_ms``, ``click_offset``, ``freshness_boost``, ``freshness_halflife_ms``.
    """

    start_ms: int
    end_ms: int
    user_factors_start: np.ndarray
    user_factors_end: np.ndarray
    user_category_start: np.ndarray
    user_category_end: np.ndarray
    user_country: np.ndarray
    user_age_bucket: np.ndarray
    user_device: np.ndarray
    user_created_ms: np.ndarray
    user_activity: np.ndarray
    item_factors: np.ndarray
    item_bias: np.ndarray
    item_popularity: np.ndarray
    item_published_ms: np.ndarray
    item_categories: np.ndarray
    item_creator: np.ndarray
    item_age_rating: np.ndarray
    item_region: np.ndarray
    item_sponsored: np.ndarray
    category_factors: np.ndarray
    creator_factors: np.ndarray
    position_bias: np.ndarray
    device_completion_shift: np.ndarray
    click_offset: float
    freshness_boost: float
    freshness_halflife_ms: float

    @property
    def n_users(self) -> int:
        """Number of users."""
        return len(self.user_factors_start)

    @property
    def n_items(self) -> int:
        """Number of items."""
        return len(self.item_factors)

    def _time(self, t: float | np.ndarray | None) -> np.ndarray:
        return np.asarray(self.end_ms if t is None else t, dtype=np.float64)

    def drift_weight(self, t: float | np.ndarray | None = None) -> np.ndarray:
        """Interpolation weight in [0, 1] between start and end tastes (``None`` = end)."""
        frac = (self._time(t) - self.start_ms) / float(self.end_ms - self.start_ms)
        return np.clip(frac, 0.0, 1.0)

    def user_factors(self, user_idx: ArrayLike, t: float | np.ndarray | None = None) -> np.ndarray:
        """Taste vectors at time ``t`` (scalar, or one time per user); ``None`` = window end."""
        u = np.asarray(user_idx, dtype=np.int64)
        w = self.drift_weight(t).astype(np.float32)[..., None]
        start, end = self.user_factors_start[u], self.user_factors_end[u]
        return start + w * (end - start)

    def user_categories(self, user_idx: ArrayLike, t: float | np.ndarray | None = None) -> np.ndarray:
        """Category taste mixtures (rows sum to 1) at time ``t``; ``None`` = window end."""
        u = np.asarray(user_idx, dtype=np.int64)
        w = self.drift_weight(t).astype(np.float32)[..., None]
        start, end = self.user_category_start[u], self.user_category_end[u]
        return start + w * (end - start)

    def freshness(self, item_idx: ArrayLike, t: float | np.ndarray | None = None) -> np.ndarray:
        """The freshness bonus of items at time ``t`` (elementwise when ``t`` is an array)."""
        age = self._time(t) - self.item_published_ms[np.asarray(item_idx, dtype=np.int64)]
        decay = np.exp2(-np.maximum(age, 0.0) / self.freshness_halflife_ms)
        return (self.freshness_boost * decay).astype(np.float32)

    def affinity(
        self, user_idx: ArrayLike, item_idx: ArrayLike | None = None, t: float | None = None
    ) -> np.ndarray:
        """True affinities at time ``t`` (``None`` = window end) for all user × item pairs.

        ``user_idx`` an int gives shape ``(n_items,)``; an array gives ``(len(user_idx), n_items)``.
        ``item_idx`` ``None`` means every item.
        """
        items = np.arange(self.n_items) if item_idx is None else np.asarray(item_idx, dtype=np.int64)
        users = np.asarray(user_idx, dtype=np.int64)
        uf = self.user_factors(np.atleast_1d(users), t)
        scores = uf @ self.item_factors[items].T
        scores += self.item_bias[items] + self.freshness(items, t)
        return scores[0] if users.ndim == 0 else scores

    def affinity_pairs(
        self, user_idx: ArrayLike, item_idx: ArrayLike, t: float | np.ndarray | None = None
    ) -> np.ndarray:
        """True affinity of each ``(user_idx[j], item_idx[j])`` pair, at ``t`` or ``t[j]``."""
        users = np.asarray(user_idx, dtype=np.int64)
        items = np.asarray(item_idx, dtype=np.int64)
        uf = self.user_factors(users, t)
        dot = np.einsum("nd,nd->n", uf, self.item_factors[items])
        return (dot + self.item_bias[items] + self.freshness(items, t)).astype(np.float32)

    def click_probability(self, affinity: np.ndarray, position: np.ndarray | int) -> np.ndarray:
        """P(click) of an item shown at ``position`` (0-based) with the given true affinity."""
        pos = np.minimum(np.asarray(position), len(self.position_bias) - 1)
        return self.position_bias[pos] / (1.0 + np.exp(self.click_offset - np.asarray(affinity)))

    def top_k(
        self,
        user_idx: ArrayLike,
        k: int,
        exclude: sp.spmatrix | Sequence[np.ndarray] | None = None,
        t: float | None = None,
    ) -> np.ndarray:
        """The oracle: each user's ``k`` best items by true affinity at ``t`` (``None`` = end).

        Only items published by ``t`` are eligible. ``exclude`` is a sparse matrix with one row per
        user index (e.g. the training matrix) or one array of item indices per requested user.
        Returns ``int64`` indices of shape ``(len(user_idx), k)`` (or ``(k,)`` for an int), best
        first; rows are padded with ``-1`` when fewer than ``k`` items are eligible.
        """
        users = np.atleast_1d(np.asarray(user_idx, dtype=np.int64))
        eligible = self.item_published_ms <= self._time(t)
        block = max(1, (1 << 22) // max(1, self.n_items))
        out = np.full((len(users), k), -1, dtype=np.int64)
        for lo in range(0, len(users), block):
            rows = users[lo : lo + block]
            scores = self.affinity(rows, None, t)
            scores[:, ~eligible] = -np.inf
            if exclude is not None:
                for j, u in enumerate(rows):
                    if sp.issparse(exclude):
                        sl = exclude[int(u)]
                        scores[j, sl.indices] = -np.inf  # type: ignore[union-attr]
                    else:
                        scores[j, np.asarray(exclude[lo + j], dtype=np.int64)] = -np.inf
            kk = min(k, scores.shape[1])
            part = np.argpartition(-scores, kk - 1, axis=1)[:, :kk]
            order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
            best = np.take_along_axis(part, order, axis=1)
            valid = np.isfinite(np.take_along_axis(scores, best, axis=1))
            out[lo : lo + len(rows), :kk] = np.where(valid, best, -1)
        return out[0] if np.ndim(user_idx) == 0 else out

    def to_arrays(self) -> dict[str, np.ndarray]:
        """All fields as NumPy arrays (scalars as 0-d arrays), for ``np.savez``."""
        return {f.name: np.asarray(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> GroundTruth:
        """Inverse of :meth:`to_arrays`."""
        kwargs: dict[str, object] = {}
        for f in fields(cls):
            value = np.asarray(arrays[f.name])
            if f.name in ("start_ms", "end_ms"):
                kwargs[f.name] = int(value)
            elif value.ndim == 0:
                kwargs[f.name] = float(value)
            else:
                kwargs[f.name] = value
        return cls(**kwargs)  # type: ignore[arg-type]
