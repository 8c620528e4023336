"""Position bias: per-slot examination propensities from logged impressions.

A shown item is clicked only if the user *examined* its slot and found it *relevant*; the
position-based click model (PBM) writes this as ``P(click | item i at position p) = θ_p · γ_i``.
:class:`PositionBiasModel` fits it by expectation-maximisation over impression slots
(``(position, item, clicked)``, vectorised with ``np.bincount``; γ is per item, the common
simplification of γ per query-item pair) and reports ``theta_`` normalised so ``θ_0 = 1``: the
examination of each slot relative to the first. When slots carry an ``explored`` flag (items
placed at random positions by an exploration policy, so relevance does not depend on the slot),
``method="auto"`` uses the click rate per position of those slots instead, which needs no model.

The ranker uses it for inverse-propensity weights (:meth:`PositionBiasModel.weights`): a click at a
slot users rarely look at is stronger evidence of relevance than one at the top, so it counts
``1 / θ_p`` times (clipped). :func:`impression_slots` turns an ``IMPRESSIONS`` table into slots
and marks each clicked when the same user has a positive event on the item within
``attribution_ms`` after the impression.

Example:
    >>> rng = np.random.default_rng(0)
    >>> n, true = 200_000, 1.0 / (1.0 + np.arange(5)) ** 0.8
    >>> pos, item = rng.integers(0, 5, n), rng.integers(0, 50, n)
    >>> clicked = rng.random(n) < true[pos] * np.linspace(0.05, 0.6, 50)[item]
    >>> m = PositionBiasModel(max_position=5).fit(pos, item, clicked)
    >>> bool(np.abs(m.theta_ - true).max() < 0.03), m.method_
    (True, 'pbm')
    >>> m.weights(np.array([0, 4, -1]), max_weight=2.0).round(2).tolist()  # -1: no known position
    [1.0, 2.0, 1.0]
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from funnel.core.errors import NotTrainedError, ValidationError
from funnel.core.estimator import Estimator
from funnel.core.interactions import Interactions

log = logging.getLogger(__name__)
METHODS = ("auto", "pbm", "explore")
"""``pbm``: the click model by EM; ``explore``: click rates of randomised slots; ``auto``: explore when
at least ``min_explored`` slots are flagged, else PBM."""
ATTRIBUTION_MS = 1_800_000
"""A positive event on a shown item within this long after the impression counts as its click."""


NEGATIVES = ("all", "retrieved", "none")
"""Impressed-not-engaged items as ranker negatives: every one, only those retrieval returned, none."""


@dataclass(frozen=True)
class BiasConfig:
    """How impressions enter ranker training (``RankingPipeline(position_bias={...})``).

    ``negatives``: one of :data:`NEGATIVES`; ``weights``: inverse-propensity weights on clicked
    rows, at most ``max_weight``; ``attribution_ms``: see :func:`impression_slots`; ``model``:
    :class:`PositionBiasModel` hyper-parameters.
    """

    negatives: str = "all"
    weights: bool = True
    max_weight: float = 10.0
    attribution_ms: int = ATTRIBUTION_MS
    model: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.negatives not in NEGATIVES:
            raise ValidationError(f"must be one of {', '.join(NEGATIVES)}", field="negatives")
        if self.max_weight < 1.0:
            raise ValidationError(f"must be >= 1, got {self.max_weight}", field="max_weight")


@dataclass
class ImpressionSlots:
    """One row per shown (impression, item): dense user and item indices, position, time, outcome."""

    user: np.ndarray
    item: np.ndarray
    position: np.ndarray
    timestamp: np.ndarray
    clicked: np.ndarray
    explored: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.user)

    def take(self, mask: np.ndarray) -> ImpressionSlots:
        """The slots where ``mask`` is true (or at the indices ``mask``)."""
        ex = None if self.explored is None else self.explored[mask]
        return ImpressionSlots(self.user[mask], self.item[mask], self.position[mask],
                               self.timestamp[mask], self.clicked[mask], ex)  # fmt: skip


def _first_at_or_after(keys: np.ndarray, ts: np.ndarray, qkey: np.ndarray, qt: np.ndarray) -> np.ndarray:
    """Per query, the first row of ``(keys, ts)`` (sorted by both) with ``key == qkey``, ``ts >= qt``.

    The end of the key's run when there is none (a vectorised binary search).
    """
    lo = np.searchsorted(keys, qkey, side="left")
    hi = np.searchsorted(keys, qkey, side="right")
    last = max(len(ts) - 1, 0)
    while True:
        active = lo < hi
        if not active.any():
            return lo
        mid = (lo + hi) // 2
        right = active & (ts[np.minimum(mid, last)] < qt)
        lo = np.where(right, mid + 1, lo)
        hi = np.where(active & ~right, mid, hi)


def impression_slots(
    table: pa.Table, inter: Interactions, attribution_ms: int = ATTRIBUTION_MS
) -> ImpressionSlots:
    """Flatten an ``IMPRESSIONS`` table into slots indexed like ``inter`` and mark the clicked ones.

    Slots of users or items unknown to ``inter`` are dropped. An optional ``explored`` column
    (``list<bool>``, one flag per item) marks slots placed at random by exploration.
    """
    items = table.column("item_ids").combine_chunks()
    parent = pc.list_parent_indices(items).to_numpy(zero_copy_only=False)
    user = inter.users.lookup(table.column("user_id")).astype(np.int64)[parent]
    item = inter.items.lookup(pc.list_flatten(items)).astype(np.int64)
    position = pc.list_flatten(table.column("positions").combine_chunks()).to_numpy(zero_copy_only=False)
    ts = table.column("timestamp").cast(pa.timestamp("ms", "UTC")).cast(pa.int64())
    ts = ts.to_numpy().astype(np.int64)[parent]
    explored = None
    if "explored" in table.column_names:
        flags = pc.list_flatten(table.column("explored").combine_chunks()).fill_null(False)
        explored = flags.to_numpy(zero_copy_only=False).astype(bool)
    ok = (user >= 0) & (item >= 0)
    slots = ImpressionSlots(user, item, position.astype(np.int64), ts, np.zeros(len(user), bool), explored)
    slots = slots.take(ok)
    pos_events = inter.positive_mask()
    ekey = inter.user_idx[pos_events].astype(np.int64) * inter.n_items + inter.item_idx[pos_events]
    ets = inter.timestamp[pos_events]
    order = np.lexsort((ets, ekey))
    ekey, ets = ekey[order], ets[order]
    qkey = slots.user * inter.n_items + slots.item
    at = _first_at_or_after(ekey, ets, qkey, slots.timestamp)
    found = at < len(ekey)
    at = np.minimum(at, max(len(ekey) - 1, 0))
    if len(ekey):
        slots.clicked = found & (ekey[at] == qkey) & (ets[at] - slots.timestamp <= attribution_ms)
    return slots


def estimate_bias(
    inter: Interactions, impressions: pa.Table, cfg: BiasConfig
) -> tuple[ImpressionSlots, PositionBiasModel | None, dict[str, Any]]:
    """Slots of ``impressions`` (up to each user's last event in ``inter``) and the model fitted on them.

    The model is ``None`` when it cannot be fitted (no clicks, say); the report says what was done.
    """
    slots = impression_slots(impressions, inter, cfg.attribution_ms)
    last = np.full(inter.n_users, np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(last, inter.user_idx, inter.timestamp)
    slots = slots.take(slots.timestamp <= last[slots.user])
    try:
        model = PositionBiasModel(**cfg.model).fit(slots.position, slots.item, slots.clicked, slots.explored)
    except ValidationError as exc:
        log.warning("position bias not estimated: %s", exc)
        return slots, None, {"used": False, "why": str(exc)}
    report = {"used": True, "method": model.method_, "n_iter": model.n_iter_, "slots": len(slots),
              "clicks": int(slots.clicked.sum()), "theta": model.theta_.round(4).tolist()}  # fmt: skip
    return slots, model, report


class PositionBiasModel(Estimator):
    """Examination propensity per position (see the module docstring).

    Args:
        max_position: positions kept apart; later positions share the last one's propensity.
        method: one of :data:`METHODS`.
        n_iter, tol: EM iterations at most, and the largest change of ``theta_`` that stops them.
        min_explored: flagged slots ``method="auto"`` needs before it trusts exploration.
        smoothing: pseudo-slots added to each position's click rate (``explore``) and each item's
            relevance (PBM, a Beta prior at the overall click rate).

    Attributes:
        theta_: ``float64 [max_position]`` propensities relative to position 0 (``theta_[0] == 1``);
        gamma_: per-item relevance (PBM; item codes as given to ``fit``); method_: what was used;
        n_iter_: EM iterations run; clicks_: clicks per position; shown_: slots per position.
    """

    def __init__(
        self,
        max_position: int = 20,
        method: str = "auto",
        n_iter: int = 500,
        tol: float = 1e-5,
        min_explored: int = 10_000,
        smoothing: float = 1.0,
    ) -> None:
        self.max_position = max_position
        self.method = method
        self.n_iter = n_iter
        self.tol = tol
        self.min_explored = min_explored
        self.smoothing = smoothing

    def fit(
        self, position: np.ndarray, item: np.ndarray, clicked: np.ndarray, explored: np.ndarray | None = None
    ) -> Self:
        """Estimate ``theta_`` from slots: position, item code, whether it was clicked (and explored)."""
        if self.method not in METHODS:
            raise ValidationError(f"must be one of {', '.join(METHODS)}", field="method")
        if self.max_position < 1:
            raise ValidationError("must be >= 1", field="max_position")
        pos = np.minimum(np.asarray(position, dtype=np.int64), self.max_position - 1)
        if len(pos) == 0 or pos.min() < 0 or not np.asarray(clicked).any():
            raise ValidationError(
                "need slots with non-negative positions and some clicks", field="impressions"
            )
        c = np.asarray(clicked, dtype=np.float64)
        P = self.max_position
        self.shown_ = np.bincount(pos, minlength=P)
        self.clicks_ = np.bincount(pos, c, minlength=P)
        n_explored = 0 if explored is None else int(np.sum(explored))
        use_explore = self.method == "explore" or (self.method == "auto" and n_explored >= self.min_explored)
        if use_explore:
            if n_explored == 0:
                raise ValidationError("no explored slots to estimate from", field="explored")
            ex = np.asarray(explored, dtype=bool)
            prior = c[ex].mean()
            rate = (np.bincount(pos[ex], c[ex], P) + self.smoothing * prior) / (
                np.bincount(pos[ex], minlength=P) + self.smoothing
            )
            theta, self.gamma_, self.n_iter_, self.method_ = rate, np.zeros(0), 0, "explore"
        else:
            codes, inv = np.unique(np.asarray(item), return_inverse=True)
            theta, self.gamma_, self.n_iter_ = self._em(pos, inv.ravel(), c, len(codes))
            self.method_ = "pbm"
        seen = self.shown_ > 0
        theta = np.where(seen, theta, np.nan)
        for p in range(1, P):  # unseen positions take the previous one's value
            if not seen[p]:
                theta[p] = theta[p - 1]
        self.theta_ = theta / theta[0]
        self.n_items_ = len(self.gamma_)
        return self

    def _em(self, pos: np.ndarray, item: np.ndarray, c: np.ndarray, n_items: int):
        """PBM by EM; returns unnormalised θ, γ and the iterations run."""
        P, eps = self.max_position, 1e-9
        n_pos = np.maximum(np.bincount(pos, minlength=P), 1)
        prior = c.mean()
        n_item = np.bincount(item, minlength=n_items) + self.smoothing
        theta = np.full(P, 0.5)
        gamma = np.clip((np.bincount(item, c, n_items) + self.smoothing * prior) / n_item * 2.0, eps, 1 - eps)
        it = 0
        for it in range(1, self.n_iter + 1):  # noqa: B007 (the count is reported)
            t, g = theta[pos], gamma[item]
            denom = np.maximum(1.0 - t * g, eps)
            miss = 1.0 - c
            new_theta = np.bincount(pos, c + miss * t * (1.0 - g) / denom, P) / n_pos
            rel = c + miss * (1.0 - t) * g / denom
            new_gamma = (np.bincount(item, rel, n_items) + self.smoothing * prior) / n_item
            new_theta, new_gamma = np.clip(new_theta, eps, 1.0), np.clip(new_gamma, eps, 1.0 - eps)
            change = np.abs(new_theta / new_theta[0] - theta / theta[0]).max()
            theta, gamma = new_theta, new_gamma
            if change < self.tol:
                break
        return theta, gamma, it

    def propensity(self, position: np.ndarray) -> np.ndarray:
        """``θ`` of each position (relative to the first; later ones share the last value)."""
        if not hasattr(self, "theta_"):
            raise NotTrainedError("PositionBiasModel is not fitted; call fit() first")
        p = np.clip(np.asarray(position, dtype=np.int64), 0, self.max_position - 1)
        return self.theta_[p]

    def weights(self, position: np.ndarray, max_weight: float = 10.0) -> np.ndarray:
        """Inverse-propensity weights ``min(1 / θ_p, max_weight)``; ``1`` where ``position < 0`` (unknown)."""
        position = np.asarray(position, dtype=np.int64)
        w = np.minimum(1.0 / np.maximum(self.propensity(position), 1e-12), max_weight)
        return np.where(position < 0, 1.0, w)
